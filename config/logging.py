"""JSON-lines logging: one object per line with the run, step and trace ids, secrets redacted.

`LOG_FORMAT=json` (the default) or `text`. Redaction covers the configured secrets
(SECRET_KEY, provider API keys, the metrics token, the encryption key) and shapes that are
secrets wherever they appear: Agentdeck API keys (`adk_…`), `sk-…` provider keys, bearer
tokens and `password=`-style pairs.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

from config import log_context, tracing

PATTERNS = [
    re.compile(r"adk_[A-Za-z0-9_\-]{8,}"),
    re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-~+/=]{8,}"),
    re.compile(r"(?i)\b(password|passwd|secret|token|api[_-]?key)(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&\"']+)"),
]
SECRET_SETTINGS = ("SECRET_KEY", "ANTHROPIC_API_KEY", "OPENAI_API_KEY", "METRICS_TOKEN", "AGENTDECK_ENCRYPTION_KEY")
STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def _known_secrets() -> list[str]:
    try:
        from django.conf import settings

        return [v for v in (getattr(settings, name, "") for name in SECRET_SETTINGS) if isinstance(v, str) and len(v) >= 8]
    except Exception:
        return []


def redact_text(text: str, secrets: list[str] | None = None) -> str:
    for secret in secrets if secrets is not None else _known_secrets():
        text = text.replace(secret, "[REDACTED]")
    for pattern in PATTERNS:
        if pattern.groups >= 3:
            text = pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}[REDACTED]", text)
        elif pattern.groups == 1:
            text = pattern.sub(lambda m: f"{m.group(1)}[REDACTED]", text)
        else:
            text = pattern.sub("[REDACTED]", text)
    return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        run = getattr(record, "run_id", None) or log_context.run_id.get()
        step = getattr(record, "step", None) or log_context.step_key.get()
        trace_id, span_id = tracing.ids()
        if run is not None:
            data["run_id"] = run
        if step:
            data["step"] = step
        if trace_id:
            data["trace_id"], data["span_id"] = trace_id, span_id
        for key, value in vars(record).items():
            if key not in STANDARD and key not in data and key not in ("run_id", "step"):
                data[key] = value if isinstance(value, str | int | float | bool | type(None)) else repr(value)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        # Redact the values, then serialise: the line stays valid JSON whatever was redacted.
        secrets = _known_secrets()
        clean = {k: redact_text(v, secrets) if isinstance(v, str) else v for k, v in data.items()}
        return json.dumps(clean, ensure_ascii=False, default=str)

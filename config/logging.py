"""JSON-lines logging: one object per line with the run, step and trace ids, secrets redacted.

`LOG_FORMAT=json` (the default) or `text`; both redact. Redaction covers every secret the
installed redactor knows (`set_redactor`: the gateway installs `mcpgateway.redaction`'s,
which knows every server, webhook and provider secret, with keyed markers; it never reads
the database while logging, so it uses the process's most recently built redactor), the
configured secrets (SECRET_KEY, provider API keys, the metrics token, the encryption key)
and shapes that are secrets wherever they appear: Agentdeck API keys (`adk_…`), `sk-…`
provider keys, bearer tokens and `password=`-style pairs.

daphne writes its access log straight to a stream, not through `logging`;
`install_access_log_redaction()` (called from `config/asgi.py`) makes it redact the
request line too, query values of secret-looking parameters (`?token=…`) included.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

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


_redactor: Callable[[str], str] | None = None
_busy = threading.local()


def set_redactor(redactor: Callable[[str], str] | None) -> None:
    """Install the function that replaces known secrets (with keyed markers) in log text."""
    global _redactor
    _redactor = redactor


def _installed(text: str) -> str:
    if _redactor is None or getattr(_busy, "on", False):
        return text
    _busy.on = True  # a log line written while redacting must not redact recursively
    try:
        return _redactor(text)
    except Exception:
        return text
    finally:
        _busy.on = False


def redact_text(text: str, secrets: list[str] | None = None) -> str:
    text = _installed(text)
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


class TextFormatter(logging.Formatter):
    """The plain-text format, redacted like the JSON one (message, exception and all)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


QUERY_SECRET = re.compile(r"(?i)([?&;](?:[^=&;#\s]*?(?:token|key|secret|password|passwd|auth|signature|sig|code|session)"
                          r"[^=&;#\s]*)=)([^&;#\s]*)")


def redact_request_line(line: str) -> str:
    """An access-log request line with secret-looking query values and known secrets replaced."""
    line = QUERY_SECRET.sub(lambda m: f"{m.group(1)}[REDACTED]", line)
    line = redact_text(line)
    decoded = unquote_plus(line)
    return line if decoded == line or redact_text(decoded) == decoded else redact_text(decoded)


def install_access_log_redaction() -> None:
    """Make daphne's access log (written to a stream, not through `logging`) redact its request lines."""
    try:
        from daphne.access import AccessLogGenerator
    except ImportError:  # pragma: no cover - another ASGI server: its logs go through `logging`
        return
    if getattr(AccessLogGenerator.write_entry, "redacting", False):
        return
    original = AccessLogGenerator.write_entry

    def write_entry(self: Any, host: Any, date: Any, request: Any, *args: Any, **kwargs: Any) -> None:
        original(self, host, date, redact_request_line(str(request)), *args, **kwargs)

    write_entry.redacting = True  # type: ignore[attr-defined]
    AccessLogGenerator.write_entry = write_entry  # type: ignore[method-assign]

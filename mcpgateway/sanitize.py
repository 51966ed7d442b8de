"""What leaves the gateway: results capped in size, secrets redacted everywhere."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def redaction_marker(secret: str) -> str:
    """What replaces a secret: it names the secret's digest, so a record (and a signed trace
    holding it) still proves which value was there without showing it."""
    return f"[REDACTED sha256:{hashlib.sha256(secret.encode()).hexdigest()[:16]}]"


def redact(value: Any, secrets: list[str]) -> Any:
    """`value` with every occurrence of each secret replaced, through nested JSON."""
    if not secrets:
        return value
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, redaction_marker(secret))
        return value
    if isinstance(value, dict):
        return {k: redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, secrets) for v in value]
    return value


def cap_text(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[truncated: {len(text) - limit} more characters]"


def cap_blocks(blocks: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """Keep content blocks while their JSON fits in `limit` characters; cut the text of the one that does not."""
    kept: list[dict[str, Any]] = []
    used = 0
    for block in blocks:
        size = len(json.dumps(block, ensure_ascii=False))
        if used + size <= limit:
            kept.append(block)
            used += size
            continue
        if block.get("type") == "text":
            kept.append({**block, "text": cap_text(block.get("text", ""), max(0, limit - used - 100))})
        kept.append({"type": "text", "text": f"[truncated: {len(blocks) - len(kept) + 1} content block(s) over the size cap]"})
        break
    return kept

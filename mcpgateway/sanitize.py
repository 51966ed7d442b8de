"""What leaves the gateway: results capped in size, secrets redacted (see `mcpgateway.redaction`)."""

from __future__ import annotations

import json
from typing import Any

from mcpgateway.redaction import Redactor, marker


def redaction_marker(secret: str) -> str:
    """What replaces a secret: a keyed digest (see `mcpgateway.redaction`), so records show
    that the same value was there without letting anyone confirm a guess."""
    return marker(secret)


def redact(value: Any, secrets: list[str]) -> Any:
    """`value` with each of `secrets` (in any encoded form) and every secret-shaped token
    replaced, through nested JSON. The gateway's paths use `mcpgateway.redaction.get_redactor()`,
    which knows every secret of the instance; this is for a given list."""
    return Redactor(secrets).redact(value)


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

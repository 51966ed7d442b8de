"""Idempotency keys: one stable name per tool call, sent upstream so a server can deduplicate.

A run's tool call is named by where it sits in the run's ledger: `run-<run id>/<step key>/
<attempt>/<ledger index>`, e.g. `run-12/research/1/3` (the 4th ledger slot of the first
attempt of step `research`; a parallel branch's step key carries its suffix, e.g.
`fetch[2]`). The key is the same every time that call is made again (a resume after a
crash, a reviewer's "retry"), and different for any other call. The gateway sends it in
the `tools/call` request's `_meta` under `META_KEY`. Calls from /mcp clients (no run)
carry no key.

Pure Python: the engine imports it.
"""

from __future__ import annotations

from typing import Any

META_KEY = "agentdeck.dev/idempotency-key"


def call_key(run_id: int | None, step_key: str, attempt: int, index: int) -> str:
    """The key of the call in ledger slot `index` of `attempt` of a run's step ("" without a run)."""
    if run_id is None:
        return ""
    return f"run-{run_id}/{step_key}/{attempt}/{index}"


def key_from_meta(meta: Any) -> str:
    """The key a request's `_meta` carries, or "" (for upstream servers that deduplicate)."""
    found = meta.get(META_KEY) if isinstance(meta, dict) else None
    return found if isinstance(found, str) else ""

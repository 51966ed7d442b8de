"""What the current log lines are about: the run and step being executed (context variables,
so parallel branches and concurrent runs each carry their own)."""

from __future__ import annotations

from contextvars import ContextVar

run_id: ContextVar[int | None] = ContextVar("agentdeck_run_id", default=None)
step_key: ContextVar[str] = ContextVar("agentdeck_step_key", default="")

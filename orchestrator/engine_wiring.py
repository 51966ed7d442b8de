"""The engine's tracing and log-context ports, wired to this project's (`config.tracing`,
`config.log_context`).

The engine imports nothing from `config/`; it calls the `Tracer` and `LogContext` it is
given, or the process defaults. `install()` makes these the defaults; the run store's module
calls it, so every process that runs the engine with a `DjangoRunStore` traces and logs
with the run's context. `engine_ports()` gives them explicitly, for an `Engine(...)` call.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from config import log_context, tracing
from orchestrator.engine import ports


class ProjectTracer:
    """OpenTelemetry spans through `config.tracing` (free while tracing is off)."""

    def span(self, name: str, attributes: dict[str, Any] | None = None, *,
             kind: str = "internal") -> AbstractContextManager[Any]:
        return tracing.span(name, attributes, kind=kind)

    def set_attributes(self, target: Any, attributes: dict[str, Any]) -> None:
        tracing.set_attributes(target, attributes)


class ProjectLogContext:
    """The step key on this task's log lines (`config.log_context`, read by the log formatter)."""

    def set_step(self, key: str) -> None:
        log_context.step_key.set(key)


def engine_ports() -> dict[str, Any]:
    """Keyword arguments for `Engine(...)`: this project's tracer and log context."""
    return {"tracer": ProjectTracer(), "log_context": ProjectLogContext()}


def install() -> None:
    """Make this project's tracer and log context the engine's defaults in this process."""
    ports.use_by_default(tracer=ProjectTracer(), log_context=ProjectLogContext())

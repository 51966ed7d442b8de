"""What the engine is given from outside: agent settings, the door to the models, and the
ports for tracing and log context (no-ops unless the process that runs the engine wires them).

The engine imports nothing from Django, Celery or `config/`: whatever it needs of them
comes in through these protocols (and the store and toolbox).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from orchestrator.engine.types import ModelRequest, ModelResponse

# Streamed model text, delivered as it arrives (providers call it; the engine publishes it).
DeltaCallback = Callable[[str], Awaitable[None]]


@dataclass(slots=True, frozen=True)
class AgentConfig:
    name: str
    provider: str
    model: str
    system_prompt: str = ""
    temperature: float | None = None
    max_tokens: int = 1024
    max_turns: int = 8
    options: dict[str, Any] = field(default_factory=dict)
    defences: dict[str, Any] = field(default_factory=dict)  # see orchestrator.engine.defences


@dataclass(slots=True)
class ModelCallResult:
    response: ModelResponse
    cost_usd: Decimal
    # Opaque to the engine: handed back with the call's usage write, so the store can close the
    # call's budget reservation in the transaction that records the usage.
    receipt: Any = None


class Models(Protocol):
    """The one door for model calls: checks the budget, calls the provider, prices the call."""

    async def complete(
        self, agent: AgentConfig, request: ModelRequest, on_delta: DeltaCallback | None = None
    ) -> ModelCallResult:
        """Raise BudgetExceeded before calling when the run's budget is spent."""


class Tracer(Protocol):
    """Spans around the engine's work (`invoke_agent`, `chat`), with GenAI attribute names."""

    def span(self, name: str, attributes: dict[str, Any] | None = None, *, kind: str = "internal") -> AbstractContextManager[Any]:
        """A context manager for a span, current while inside; what it yields goes to `set_attributes`."""

    def set_attributes(self, target: Any, attributes: dict[str, Any]) -> None: ...


class LogContext(Protocol):
    """What the current log lines are about: the engine says which step it is working on."""

    def set_step(self, key: str) -> None: ...


class NoTracer:
    """Tracing off: spans cost one call."""

    _null = contextlib.nullcontext()

    def span(self, name: str, attributes: dict[str, Any] | None = None, *, kind: str = "internal") -> AbstractContextManager[Any]:
        return self._null

    def set_attributes(self, target: Any, attributes: dict[str, Any]) -> None:
        return None


class NoLogContext:
    def set_step(self, key: str) -> None:
        return None


@dataclass(slots=True)
class Observability:
    """The tracer and log context an Engine uses when it is given none."""

    tracer: Tracer = field(default_factory=NoTracer)
    log_context: LogContext = field(default_factory=NoLogContext)


defaults = Observability()


def use_by_default(*, tracer: Tracer | None = None, log_context: LogContext | None = None) -> None:
    """Set the process's default tracer and log context (the host application wires its own once)."""
    if tracer is not None:
        defaults.tracer = tracer
    if log_context is not None:
        defaults.log_context = log_context

"""What the engine is given from outside: agent settings and the door to the models."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from orchestrator.engine.types import ModelRequest, ModelResponse
from orchestrator.providers.base import DeltaCallback


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

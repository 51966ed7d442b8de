"""The one door for model calls: budget check before, price and usage after.

The engine calls `complete`; the door refuses (BudgetExceeded) when the run has spent
its token or dollar budget, calls the provider chosen by the agent, and prices the call
from the editable price table. The engine persists the usage the door reports.
"""

from __future__ import annotations

from decimal import Decimal

from orchestrator.engine.errors import BudgetExceeded, ProviderError
from orchestrator.engine.ports import AgentConfig, ModelCallResult
from orchestrator.engine.spec import Limits
from orchestrator.engine.types import ModelRequest
from orchestrator.models import ModelPrice
from orchestrator.providers import DeltaCallback, get_provider


class ModelDoor:
    """One run's door. Totals start from what the run already spent (on resume)."""

    def __init__(self, *, limits: Limits, prices: dict[tuple[str, str], ModelPrice | None],
                 used_tokens: int = 0, used_cost: Decimal = Decimal(0)):
        self.limits = limits
        self.prices = prices
        self.used_tokens = used_tokens
        self.used_cost = used_cost

    def check_budget(self) -> None:
        if self.limits.max_tokens is not None and self.used_tokens >= self.limits.max_tokens:
            raise BudgetExceeded(f"token budget reached: {self.used_tokens} of {self.limits.max_tokens} tokens used")
        if self.limits.max_cost_usd is not None and self.used_cost >= Decimal(str(self.limits.max_cost_usd)):
            raise BudgetExceeded(f"cost budget reached: ${self.used_cost:.4f} of ${self.limits.max_cost_usd} spent")

    async def complete(self, agent: AgentConfig, request: ModelRequest, on_delta: DeltaCallback | None = None) -> ModelCallResult:
        self.check_budget()
        try:
            provider = get_provider(agent.provider)
        except ValueError as exc:
            raise ProviderError(str(exc), retryable=False) from None
        response = await provider.complete(request, on_delta)
        price = self.prices.get((agent.provider, agent.model))
        cost = price.cost(response.usage.input_tokens, response.usage.output_tokens) if price else Decimal(0)
        self.used_tokens += response.usage.total
        self.used_cost += cost
        return ModelCallResult(response, cost.quantize(Decimal("0.000001")))

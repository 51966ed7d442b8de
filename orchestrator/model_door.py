"""The one door for model calls: budgets before, price and usage after.

Before a call the door counts its input tokens with the provider's counter (Anthropic's
token-counting endpoint; an upper bound for OpenAI-compatible servers; see each provider's
`count_input_tokens`), refuses (BudgetExceeded) when the run's own budget or a team, agent or
pipeline budget has no room for that input plus one output token, and otherwise shrinks the
call's max_tokens to the room left and reserves input + max_tokens (persisted, in the name of
the run's lease). After the call it prices it from the editable price table and settles the
reservation to the actual usage; the store deletes the reservation in the transaction that
records that usage (the receipt travels with the usage write).

The door's database work (the limits read again, the room, the reservation, its settling or
release, the database limiter's hit) is tried again while the database is out of reach, with
the store commit's backoff and deadline (`store.retry_unreachable`): a connection lost there
used to fail the run, and one lost while a paid call was settled left its usage unrecorded.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from decimal import Decimal
from functools import partial
from typing import TypeVar

from config.db_writer import run_write
from orchestrator import budgets
from orchestrator.budgets import MICRO, Budget
from orchestrator.engine.errors import BudgetExceeded, ProviderError
from orchestrator.engine.ports import AgentConfig, ModelCallResult
from orchestrator.engine.spec import Limits
from orchestrator.engine.types import ModelRequest
from orchestrator.limits import wait_for_agent_slot
from orchestrator.models import ModelPrice
from orchestrator.providers import DeltaCallback, get_provider
from orchestrator.providers.base import estimate_input_tokens
from orchestrator.runners.claims import limits_now
from orchestrator.store import retry_unreachable

T = TypeVar("T")

# How often a call looks for room again when concurrent calls took what it saw.
RESERVE_ATTEMPTS = 3
# A run under no budget looks for one created since at most this often (one under budgets: every
# call); its agents' model-call rates are read along, as often.
BUDGETS_FRESH_S = 1.0


class ModelDoor:
    """One run's door. Totals start from what the run already spent (on resume)."""

    def __init__(self, *, limits: Limits, prices: dict[tuple[str, str], ModelPrice | None],
                 used_tokens: int = 0, used_cost: Decimal = Decimal(0),
                 budgets: list[Budget] | None = None, agent_ids: dict[str, int] | None = None,
                 agent_rates: dict[str, int] | None = None, run_id: int | None = None, lease_owner: str = "",
                 team_id: int | None = None, pipeline_id: int | None = None):
        self.limits = limits
        self.prices = prices
        self.used_tokens = used_tokens
        self.used_cost = used_cost
        self.budgets = budgets or []
        # Where the budgets and rates are read again from (`_fresh_budgets`); None: those given stand.
        self.team_id, self.pipeline_id = team_id, pipeline_id
        self._budgets_read_at = time.monotonic()
        self.agent_ids = agent_ids or {}
        self.agent_rates = agent_rates or {}  # model calls per minute, by agent name
        # One reservation is made at a time, and the unsettled rows of those made are known, so
        # the rows of an attempt whose answer was lost are found (`_reserve_room`).
        self._reserving: asyncio.Lock | None = None
        self._held_rows: set[int] = set()
        # Team budgets are reserved in the name of the run and this worker's lease on it.
        self.run_id = run_id
        self.lease_owner = lease_owner
        # Room promised to calls in flight (parallel branches share the run's budget).
        self._held_tokens = 0
        self._held_cost = Decimal(0)

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
        await self._fresh_budgets()
        await wait_for_agent_slot(self.agent_ids.get(agent.name), self.agent_rates.get(agent.name))
        price = self.prices.get((agent.provider, agent.model))
        team_budgets = budgets.applicable(self.budgets, self.agent_ids.get(agent.name))
        limited = bool(team_budgets) or self.limits.max_tokens is not None or self.limits.max_cost_usd is not None
        counted = await count_input_tokens(provider, request) if limited else estimate_input_tokens(request)
        if price is None and (self.limits.max_cost_usd is not None or any(b.unit == "usd" for b in team_budgets)):
            # Unpriced, the call would cost $0 and no dollar budget would ever stop it.
            raise ProviderError(f"a dollar budget applies to {agent.provider}/{agent.model}, which has no price: set "
                                "its price (Model prices) so the budget can be kept", retryable=False)
        self._fit_run_budget(request, counted, price)
        # Held at once, before any await: the run's other branches size their calls against
        # the room this one may use while its team reservation goes to the database.
        held_tokens = counted + request.max_tokens
        held_cost = _price(price, counted, request.max_tokens)
        self._held_tokens += held_tokens
        self._held_cost += held_cost
        reservation = None
        try:
            if team_budgets:
                if self.run_id is None:
                    raise ProviderError("team budgets apply only to calls made for a run", retryable=False)
                reservation = await self._reserve(team_budgets, request, counted, price)
                # The reservation may have shrunk the call: hold only what it may still use.
                shrunk_tokens, shrunk_cost = counted + request.max_tokens, _price(price, counted, request.max_tokens)
                self._held_tokens += shrunk_tokens - held_tokens
                self._held_cost += shrunk_cost - held_cost
                held_tokens, held_cost = shrunk_tokens, shrunk_cost
            try:
                response = await provider.complete(request, on_delta)
            except BaseException:
                if reservation is not None:
                    await asyncio.shield(self._db(budgets.release, reservation))
                    self._held_rows.difference_update(row[0] for row in reservation.rows)
                raise
        finally:
            self._held_tokens -= held_tokens
            self._held_cost -= held_cost
        cost = _price(price, response.usage.input_tokens, response.usage.output_tokens)
        receipt = None
        if reservation is not None:
            # Paid for: settled however long the database is out of reach (within the deadline).
            # Settling again is harmless: a row already settled moves no counter.
            receipt = await asyncio.shield(self._db(budgets.settle, reservation, response.usage.total, _micro(cost)))
            self._held_rows.difference_update(row[0] for row in reservation.rows)
        self.used_tokens += response.usage.total
        self.used_cost += cost
        return ModelCallResult(response, cost.quantize(Decimal("0.000001")), receipt)

    async def _db(self, func: Callable[..., T], *args: object) -> T:
        """`run_write(func, *args)`, tried again while the database is out of reach (as the
        store's commit is): for the door's reads and its writes that are safe to repeat."""
        name = getattr(func, "__name__", None) or getattr(getattr(func, "func", None), "__name__", "write")
        return await retry_unreachable(lambda: run_write(func, *args), f"run {self.run_id}: model door {name}")

    async def _fresh_budgets(self) -> None:
        """The team's budgets and its agents' model-call rates as they stand, before the call:
        what the run's claim read missed a budget created since, and one whose kind, period or
        target was changed (a new limit: `do_save_limit`), so the run went on spending without
        it (found by a review); likewise a rate limit created or changed, which never held for
        the runs in flight (found by a review). A run under budgets reads them at every call;
        one under none at most every `BUDGETS_FRESH_S` (a query per call on the hot path of
        every run otherwise). One read of the limit table, the claim's (`limits_now`)."""
        if self.team_id is None or self.pipeline_id is None:
            return
        now = time.monotonic()
        if self.budgets or now - self._budgets_read_at >= BUDGETS_FRESH_S:
            self._budgets_read_at = now
            self.budgets, self.agent_rates = await self._db(limits_now, self.team_id, self.pipeline_id, self.agent_ids)

    async def _reserve(self, team_budgets: list[Budget], request: ModelRequest, counted: int,
                       price: ModelPrice | None) -> budgets.Reservation:
        """Shrink the call to the room left and reserve it. A concurrent call may take that room
        first: then look again and shrink further, so a call pauses only when nothing fits."""
        for attempt in range(RESERVE_ATTEMPTS):
            room = await self._db(budgets.remaining, team_budgets)
            tokens, usd = room["tokens"], room["usd"]
            if tokens is not None:
                _shrink(request, counted, tokens[0], None, price, f"the {tokens[1].label}")
            if usd is not None:
                _shrink(request, counted, None, Decimal(usd[0]) / MICRO, price, f"the {usd[1].label}")
            try:
                return await self._reserve_room(team_budgets, counted + request.max_tokens,
                                                _micro(_price(price, counted, request.max_tokens)))
            except BudgetExceeded:
                if attempt == RESERVE_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    async def _reserve_room(self, team_budgets: list[Budget], tokens: int, usd_micro: int) -> budgets.Reservation:
        """`budgets.reserve`, tried again while the database is out of reach. An attempt whose
        answer was lost may have committed: before the next, its rows are looked for (this
        run's, this lease's, unsettled, held by no call of this door: `budgets.lost_reservation`)
        and taken as the reservation, rather than room taken twice (the second held until the
        run ends or pauses). So this door makes one reservation at a time."""
        if self._reserving is None:
            self._reserving = asyncio.Lock()
        async with self._reserving:
            since = time.time() - 1.0
            in_doubt = False

            async def attempt() -> budgets.Reservation:
                nonlocal in_doubt
                if in_doubt:
                    lost = await run_write(partial(budgets.lost_reservation, team_budgets, run_id=self.run_id,
                                                   lease_owner=self.lease_owner, held=set(self._held_rows), since=since))
                    if lost is not None:
                        return lost
                in_doubt = True
                return await run_write(partial(budgets.reserve, team_budgets, tokens, usd_micro,
                                               run_id=self.run_id, lease_owner=self.lease_owner))

            reservation = await retry_unreachable(attempt, f"run {self.run_id}: model door reserve")
            self._held_rows.update(row[0] for row in reservation.rows)
            return reservation

    def _fit_run_budget(self, request: ModelRequest, input_tokens: int, price: ModelPrice | None) -> None:
        tokens = None if self.limits.max_tokens is None else self.limits.max_tokens - self.used_tokens - self._held_tokens
        usd = None
        if self.limits.max_cost_usd is not None:
            usd = Decimal(str(self.limits.max_cost_usd)) - self.used_cost - self._held_cost
        _shrink(request, input_tokens, tokens, usd, price, "the run's budget")


async def count_input_tokens(provider: object, request: ModelRequest) -> int:
    """The call's input tokens before it is made: the provider's own counter where it has one
    (`count_input_tokens`: system prompt, tools and messages), else about four characters a token."""
    counter = getattr(provider, "count_input_tokens", None)
    if counter is None:
        return estimate_input_tokens(request)
    return int(await counter(request))


def _shrink(request: ModelRequest, input_tokens: int, tokens: int | None, usd: Decimal | None,
            price: ModelPrice | None, what: str) -> None:
    """Cap max_tokens to the room left; refuse when not even one output token fits."""
    cap = request.max_tokens
    if tokens is not None:
        cap = min(cap, tokens - input_tokens)
    if usd is not None and price is not None and price.output_per_mtok > 0:
        left = usd - price.input_per_mtok * input_tokens / Decimal(1_000_000)
        cap = min(cap, math.floor(left * Decimal(1_000_000) / price.output_per_mtok))
    if cap < 1:
        raise BudgetExceeded(f"{what} has no room for another model call (about {input_tokens} input tokens)")
    request.max_tokens = cap


def _price(price: ModelPrice | None, input_tokens: int, output_tokens: int) -> Decimal:
    return price.cost(input_tokens, output_tokens) if price else Decimal(0)


def _micro(usd: Decimal) -> int:
    return int((usd * MICRO).to_integral_value(rounding="ROUND_CEILING"))

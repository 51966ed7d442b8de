"""Token and dollar budgets per day or month, for a team, an agent or a pipeline.

The model door asks `reserve` before every call: each applicable budget must have room for
the call's most (estimated input + max_tokens, and its price); the door first shrinks
max_tokens to what is left, so a run stops exactly at its budget instead of overspending.
Reservations are conditional UPDATEs (atomic under concurrency, any number of processes);
`settle` replaces a reservation by the call's actual usage.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import F, Sum

from orchestrator.engine.errors import BudgetExceeded
from orchestrator.models import BudgetCounter, Limit, LimitKind, LimitScope, UsageRecord

MICRO = Decimal(1_000_000)
BUDGET_KINDS = {
    LimitKind.TOKENS_PER_DAY: ("tokens", "day"),
    LimitKind.TOKENS_PER_MONTH: ("tokens", "month"),
    LimitKind.USD_PER_DAY: ("usd", "day"),
    LimitKind.USD_PER_MONTH: ("usd", "month"),
}


@dataclass(frozen=True, slots=True)
class Budget:
    limit_id: int
    unit: str  # tokens | usd (micro-dollars)
    period: str  # day | month
    value: int
    scope: str
    team_id: int
    agent_id: int | None
    pipeline_id: int | None
    label: str

    def window(self, now: float | None = None) -> int:
        moment = datetime.fromtimestamp(now if now is not None else time.time(), UTC)
        return moment.toordinal() if self.period == "day" else moment.year * 12 + moment.month - 1

    def period_start(self, window: int) -> datetime:
        if self.period == "day":
            day = datetime.fromordinal(window)
            return day.replace(tzinfo=UTC)
        return datetime(window // 12, window % 12 + 1, 1, tzinfo=UTC)


def budgets_for_run(team_id: int, pipeline_id: int) -> list[Budget]:
    """Every budget that can apply to a run: the team's, its pipeline's, and its team's agents'."""
    rows = Limit.objects.filter(team_id=team_id, kind__in=list(BUDGET_KINDS)).filter(
        scope__in=[LimitScope.TEAM, LimitScope.AGENT, LimitScope.PIPELINE])
    budgets = []
    for row in rows:
        if row.scope == LimitScope.PIPELINE and row.pipeline_id != pipeline_id:
            continue
        unit, period = BUDGET_KINDS[row.kind]
        value = int(row.value * MICRO) if unit == "usd" else int(row.value)
        budgets.append(Budget(row.pk, unit, period, value, row.scope, team_id, row.agent_id, row.pipeline_id,
                              f"{row.get_kind_display()} budget of the {row.scope} ({row.value})"))
    return budgets


def applicable(budgets: list[Budget], agent_id: int | None) -> list[Budget]:
    return [b for b in budgets if b.scope != LimitScope.AGENT or b.agent_id == agent_id]


def _spent(budget: Budget, window: int) -> int:
    """What the scope used in the period, from the usage records (a new counter starts here)."""
    rows = UsageRecord.objects.filter(team_id=budget.team_id, created_at__gte=budget.period_start(window))
    if budget.scope == LimitScope.AGENT:
        rows = rows.filter(agent_id=budget.agent_id)
    elif budget.scope == LimitScope.PIPELINE:
        rows = rows.filter(run__pipeline_version__pipeline_id=budget.pipeline_id)
    if budget.unit == "tokens":
        totals = rows.aggregate(i=Sum("input_tokens"), o=Sum("output_tokens"))
        return (totals["i"] or 0) + (totals["o"] or 0)
    return int((rows.aggregate(c=Sum("cost_usd"))["c"] or Decimal(0)) * MICRO)


def _counter(budget: Budget, window: int) -> BudgetCounter:
    counter = BudgetCounter.objects.filter(limit_id=budget.limit_id, window=window).first()
    if counter is not None:
        return counter
    try:
        with transaction.atomic():
            return BudgetCounter.objects.create(limit_id=budget.limit_id, window=window, used=_spent(budget, window))
    except IntegrityError:
        return BudgetCounter.objects.get(limit_id=budget.limit_id, window=window)


def remaining(budgets: list[Budget]) -> dict[str, tuple[int, Budget] | None]:
    """The tightest budget per unit and the room it has left (None: no budget of that unit)."""
    left: dict[str, tuple[int, Budget] | None] = {"tokens": None, "usd": None}
    for budget in budgets:
        room = budget.value - _counter(budget, budget.window()).used
        current = left[budget.unit]
        if current is None or room < current[0]:
            left[budget.unit] = (room, budget)
    return left


@dataclass(slots=True)
class Reservation:
    amounts: list[tuple[int, int, int]]  # (limit id, window, amount)


def reserve(budgets: list[Budget], tokens: int, usd_micro: int) -> Reservation:
    """Take room for one call from every budget at once, or none (BudgetExceeded)."""
    taken = []
    with transaction.atomic():
        for budget in budgets:
            window = budget.window()
            _counter(budget, window)
            amount = tokens if budget.unit == "tokens" else usd_micro
            fits = BudgetCounter.objects.filter(limit_id=budget.limit_id, window=window,
                                                used__lte=budget.value - amount).update(used=F("used") + amount)
            if not fits:
                used = BudgetCounter.objects.get(limit_id=budget.limit_id, window=window).used
                shown = f"{used / MICRO:.4f} of {budget.value / MICRO:.4f} USD" if budget.unit == "usd" else f"{used} of {budget.value} tokens"
                transaction.set_rollback(True)
                raise BudgetExceeded(f"{budget.label} reached: {shown} used")
            taken.append((budget.limit_id, window, amount))
    return Reservation(taken)


def settle(reservation: Reservation, budgets: list[Budget], tokens: int, usd_micro: int) -> None:
    """Replace the reservation by what the call used (0 and 0 release it)."""
    units = {b.limit_id: b.unit for b in budgets}
    with transaction.atomic():
        for limit_id, window, amount in reservation.amounts:
            actual = tokens if units[limit_id] == "tokens" else usd_micro
            BudgetCounter.objects.filter(limit_id=limit_id, window=window).update(used=F("used") + (actual - amount))

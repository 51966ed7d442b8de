"""Token and dollar budgets per day or month, for a team, an agent or a pipeline.

The model door asks `reserve` before every call: each applicable budget must have room for
the call's most (counted input + max_tokens, and its price); the door first shrinks
max_tokens to what is left, so a run stops at its budget instead of overspending.
Room is taken with conditional UPDATEs (atomic under concurrency, any number of processes),
and each taking is a `BudgetReservation` row naming the run and the worker's lease, created
in the same transaction. `settle` turns a reservation into the call's actual usage; the row
ends in the transaction that records that usage (`record`). Rows a worker left behind (it
died mid-call) are given back when another worker claims the run or the run ends
(`release_run`), so a counter always equals the recorded usage plus the calls in flight.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import F, QuerySet, Sum

from config.sql_rows import select_rows
from orchestrator.engine.errors import BudgetExceeded, LeaseLost
from orchestrator.models import (
    BudgetCounter,
    BudgetReservation,
    Limit,
    LimitKind,
    LimitScope,
    Run,
    UsageRecord,
)

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
        scope__in=[LimitScope.TEAM, LimitScope.AGENT, LimitScope.PIPELINE]).order_by("scope", "kind", "pk")
    # (The model's default order, by team first, joins the team table: one team here.)
    return budgets_from_limits(rows, team_id, pipeline_id)


def budgets_from_limits(rows: Iterable[Limit], team_id: int, pipeline_id: int) -> list[Budget]:
    """The budgets among a team's limit rows (any kinds and scopes, ordered by scope, kind and
    id as `budgets_for_run` reads them) that can apply to a run of `pipeline_id`."""
    budgets = []
    for row in rows:
        if row.team_id != team_id or row.kind not in BUDGET_KINDS:
            continue
        if row.scope not in (LimitScope.TEAM, LimitScope.AGENT, LimitScope.PIPELINE):
            continue
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


def as_now(budgets: list[Budget]) -> list[Budget]:
    """`budgets` as their limits stand now: a run reads its budgets when it is claimed, and a
    limit lowered since (or deleted, or turned into another kind) must hold for its next call,
    not only for the runs claimed after the change."""
    if not budgets:
        return budgets
    rows = {pk: (value, kind) for pk, value, kind in
            Limit.objects.filter(pk__in=[b.limit_id for b in budgets]).values_list("pk", "value", "kind")}
    now = []
    for budget in budgets:
        found = rows.get(budget.limit_id)
        if found is None or BUDGET_KINDS.get(found[1]) != (budget.unit, budget.period):
            continue  # deleted, or another kind now (its counters start afresh: `do_save_limit`)
        value = int(found[0] * MICRO) if budget.unit == "usd" else int(found[0])
        now.append(budget if value == budget.value else replace(budget, value=value))
    return now


def remaining(budgets: list[Budget]) -> dict[str, tuple[int, Budget] | None]:
    """The tightest budget per unit and the room it has left (None: no budget of that unit)."""
    left: dict[str, tuple[int, Budget] | None] = {"tokens": None, "usd": None}
    for budget in as_now(budgets):
        room = budget.value - _counter(budget, budget.window()).used
        current = left[budget.unit]
        if current is None or room < current[0]:
            left[budget.unit] = (room, budget)
    return left


@dataclass(slots=True)
class Reservation:
    """The reservation rows one call holds: (row id, limit id, window, unit, amount)."""

    rows: list[tuple[int, int, int, str, int]] = field(default_factory=list)
    run_id: int | None = None
    at: float = 0.0  # when the room was taken (time.time()): the windows are of this moment


@dataclass(slots=True)
class Receipt:
    """A settled call: its rows and their actual amounts, deleted when its usage is recorded."""

    rows: list[tuple[int, int, int, int]] = field(default_factory=list)  # (row id, limit id, window, actual)
    at: float = 0.0  # when the room was taken: the call's usage is dated then (`usage_dated`)


def usage_dated(receipt: Receipt | None, now: datetime) -> datetime:
    """When a call's usage record is dated: when its budget room was taken, so the usage falls in
    the window its reservation was counted in. Dated at its commit, a call in flight at UTC
    midnight (or a month's end) was counted in the old period's counter and recorded in the new
    one, which never learned of it: the new period went over its budget by the calls in flight
    at the boundary. A call under no budget is dated at its commit."""
    if receipt is None or not receipt.rows or not receipt.at:
        return now
    return datetime.fromtimestamp(receipt.at, UTC)


def reserve(budgets: list[Budget], tokens: int, usd_micro: int, *, run_id: int, lease_owner: str) -> Reservation:
    """Take room for one call from every budget at once, or none (BudgetExceeded).

    Only while `lease_owner` holds the run (else LeaseLost): the run row is locked first, so a
    take-over either sees these rows (and releases them) or has already made this one fail.
    """
    taken = Reservation(run_id=run_id, at=time.time())
    with transaction.atomic():
        holder = Run.objects.select_for_update().filter(pk=run_id).values_list("lease_owner", flat=True).first()
        if holder != lease_owner:
            raise LeaseLost(f"run {run_id} is now held by {holder or 'nobody'}")
        for budget in sorted(as_now(budgets), key=lambda b: b.limit_id):  # one lock order for all counter writers
            window = budget.window(taken.at)
            _counter(budget, window)
            amount = tokens if budget.unit == "tokens" else usd_micro
            fits = BudgetCounter.objects.filter(limit_id=budget.limit_id, window=window,
                                                used__lte=budget.value - amount).update(used=F("used") + amount)
            if not fits:
                used = BudgetCounter.objects.get(limit_id=budget.limit_id, window=window).used
                shown = f"{used / MICRO:.4f} of {budget.value / MICRO:.4f} USD" if budget.unit == "usd" else f"{used} of {budget.value} tokens"
                transaction.set_rollback(True)
                raise BudgetExceeded(f"{budget.label} reached: {shown} used")
            row = BudgetReservation.objects.create(run_id=run_id, lease_owner=lease_owner, limit_id=budget.limit_id,
                                                   window=window, amount=amount)
            taken.rows.append((row.pk, budget.limit_id, window, budget.unit, amount))
    return taken


def lost_reservation(budgets: list[Budget], *, run_id: int, lease_owner: str, held: Iterable[int],
                     since: float) -> Reservation | None:
    """The reservation a `reserve` whose answer was lost made (its connection was cut after the
    commit): the run's unsettled rows in the lease's name created since `since` (time.time())
    that none of the caller's calls holds (`held`), or None when it made none. The caller makes
    one reservation at a time (`ModelDoor._reserving`), so such rows are that attempt's."""
    units = {budget.limit_id: budget.unit for budget in budgets}
    rows = list(BudgetReservation.objects.filter(
        run_id=run_id, lease_owner=lease_owner, settled=False, created_at__gte=datetime.fromtimestamp(since, UTC),
    ).exclude(pk__in=list(held)).order_by("pk").values_list("pk", "limit_id", "window", "amount", "created_at"))
    found = [row for row in rows if row[1] in units]
    if not found:
        return None
    return Reservation(rows=[(pk, limit_id, window, units[limit_id], amount) for pk, limit_id, window, amount, _ in found],
                       run_id=run_id, at=min(row[4] for row in found).timestamp())


def settle(reservation: Reservation, tokens: int, usd_micro: int) -> Receipt:
    """Replace the reserved amounts by what the call used; the rows stay until the usage is recorded.

    A row already given back (the run was taken over meanwhile) moves no counter, nor does one
    already settled: settling again (an attempt whose answer was lost) changes nothing.
    """
    receipt = Receipt(at=reservation.at)
    with transaction.atomic():
        _lock_runs([reservation.run_id] if reservation.run_id is not None and reservation.rows else [])
        for row_id, limit_id, window, unit, amount in reservation.rows:
            actual = tokens if unit == "tokens" else usd_micro
            if BudgetReservation.objects.filter(pk=row_id, settled=False).update(amount=actual, settled=True):
                BudgetCounter.objects.filter(limit_id=limit_id, window=window).update(used=F("used") + (actual - amount))
            receipt.rows.append((row_id, limit_id, window, actual))
    return receipt


def release(reservation: Reservation) -> None:
    """Give a call's room back (the call failed or was never made)."""
    with transaction.atomic():
        _lock_runs([reservation.run_id] if reservation.run_id is not None and reservation.rows else [])
        _give_back(BudgetReservation.objects.filter(pk__in=[row[0] for row in reservation.rows]))


def record(receipts: list[Receipt]) -> None:
    """In the transaction that writes the usage records of settled calls: their rows end.

    The counters already hold the actual usage; a row that was given back meanwhile (the run
    was taken over, or ended) is counted again here, since its usage is being recorded now.
    """
    for receipt in receipts:
        for row_id, limit_id, window, actual in receipt.rows:
            deleted, _ = BudgetReservation.objects.filter(pk=row_id).delete()
            if not deleted:
                BudgetCounter.objects.filter(limit_id=limit_id, window=window).update(used=F("used") + actual)


def budgets_for_agent(team_id: int, agent_id: int) -> list[Budget]:
    """The budgets that hold a call made outside any run by `agent_id` (the eval judge's): the
    team's and the agent's."""
    rows = Limit.objects.filter(team_id=team_id, kind__in=list(BUDGET_KINDS)).filter(
        scope__in=[LimitScope.TEAM, LimitScope.AGENT]).order_by("scope", "kind", "pk")
    return applicable(budgets_from_limits(rows, team_id, -1), agent_id)


def take_room(budgets: list[Budget], tokens: int, usd_micro: int) -> Receipt:
    """Room for one call made outside any run, from every budget at once, or none
    (BudgetExceeded): the counters only, no reservation row (there is no run, no lease, to give
    it back through). `record_unowned` replaces the amounts by the actual usage and writes the
    usage record in one transaction; a process that dies in between leaves the room taken
    until the period ends (the counter errs high, never low)."""
    taken = Receipt(at=time.time())
    with transaction.atomic():
        for budget in sorted(as_now(budgets), key=lambda b: b.limit_id):  # one lock order for all counter writers
            window = budget.window(taken.at)
            _counter(budget, window)
            amount = tokens if budget.unit == "tokens" else usd_micro
            if not BudgetCounter.objects.filter(limit_id=budget.limit_id, window=window,
                                                used__lte=budget.value - amount).update(used=F("used") + amount):
                transaction.set_rollback(True)
                raise BudgetExceeded(f"{budget.label} has no room for this call ({amount} "
                                     f"{'tokens' if budget.unit == 'tokens' else 'micro-USD'})")
            taken.rows.append((0, budget.limit_id, window, amount if budget.unit == "tokens" else -amount))
    return taken


def _unowned_rows(taken: Receipt) -> list[tuple[int, int, bool, int]]:
    """(limit id, window, in dollars, amount) of `take_room`'s rows (a dollar row's amount is
    stored negated, to tell the units apart)."""
    return [(limit_id, window, amount < 0, abs(amount)) for _, limit_id, window, amount in taken.rows]


def record_unowned(taken: Receipt, tokens: int, usd_micro: int, usage: UsageRecord) -> None:
    """The call's actual usage in place of the room `take_room` took, and its usage record
    (dated when the room was taken), together."""
    with transaction.atomic():
        for limit_id, window, usd, amount in _unowned_rows(taken):
            actual = usd_micro if usd else tokens
            BudgetCounter.objects.filter(limit_id=limit_id, window=window).update(used=F("used") + (actual - amount))
        dated = usage_dated(taken, usage.created_at)
        usage.save()  # (`auto_now_add` dates it now: set again below)
        UsageRecord.objects.filter(pk=usage.pk).update(created_at=dated)
        usage.created_at = dated


def give_back_unowned(taken: Receipt) -> None:
    """The room `take_room` took, given back (the call failed)."""
    with transaction.atomic():
        for limit_id, window, _usd, amount in _unowned_rows(taken):
            BudgetCounter.objects.filter(limit_id=limit_id, window=window).update(used=F("used") - amount)


def release_run(run_id: int, *, keep_owner: str = "") -> int:
    """Give back every open reservation of a run except those of `keep_owner`: in the claim that
    takes the run over (the old owner's), and where the run ends or pauses (all). Call it inside
    that transaction. Returns how many rows were given back."""
    # Plain SQL first: it runs in every run's last commit, and most runs hold none.
    if not select_rows(BudgetReservation, ("id",), {"run_id": run_id}, {"lease_owner": keep_owner} if keep_owner else None):
        return 0
    rows = BudgetReservation.objects.filter(run_id=run_id)
    if keep_owner:
        rows = rows.exclude(lease_owner=keep_owner)
    return _give_back(rows)


def release_orphaned() -> int:
    """Give back reservations whose owner no longer holds their run (a sweep for any path that
    ended or moved a run without releasing them)."""
    orphaned = BudgetReservation.objects.exclude(lease_owner=F("run__lease_owner"))
    with transaction.atomic():
        run_ids = sorted(set(orphaned.values_list("run_id", flat=True)))
        _lock_runs(run_ids)
        return _give_back(orphaned.filter(run_id__in=run_ids))


def _lock_runs(run_ids: list[int]) -> None:
    """Lock runs' rows (in id order) before their reservations and the counters: every writer
    takes runs, then reservation rows, then counters, so none waits on another in a cycle."""
    if run_ids:
        list(Run.objects.select_for_update().filter(pk__in=run_ids).order_by("pk").values_list("pk", flat=True))


def _give_back(rows: QuerySet[BudgetReservation]) -> int:
    taken = list(rows.select_for_update(of=("self",)).values_list("pk", "limit_id", "window", "amount"))
    if not taken:
        return 0
    totals: dict[tuple[int, int], int] = defaultdict(int)
    for _, limit_id, window, amount in taken:
        totals[(limit_id, window)] += amount
    BudgetReservation.objects.filter(pk__in=[row[0] for row in taken]).delete()
    for (limit_id, window), amount in sorted(totals.items()):
        BudgetCounter.objects.filter(limit_id=limit_id, window=window).update(used=F("used") - amount)
    return len(taken)

"""Budget reservations survive crashes: they are rows naming the run and the worker's lease, and
the room a dead worker held goes back when another worker claims the run or the run ends."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone

from orchestrator import budgets
from orchestrator.actions.runs import do_fail_run
from orchestrator.engine.errors import LeaseLost
from orchestrator.execution import _claim
from orchestrator.models import BudgetCounter, BudgetReservation, Limit, Run
from tests.conftest import pipeline, scripted, start

pytestmark = pytest.mark.django_db(transaction=True)

# Owners on another host: neither is checked for being alive, only their leases count.
DEAD = "elsewhere:4242:aa:01"
TAKER = "elsewhere:4343:bb:02"


@pytest.fixture
def held(team):
    """A running run, claimed by DEAD, under a 1,000-token team budget."""
    scripted(team, "w", {"text": "ok"})
    Limit.objects.create(team=team, scope="team", kind="tokens_per_day", value=Decimal(1000))
    run = start(pipeline(team, {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "go"}]}))
    prepared = _claim(run.pk, DEAD)
    assert prepared is not None
    return run, prepared.budgets


def _expire(run: Run) -> None:
    Run.objects.filter(pk=run.pk).update(lease_until=timezone.now())


def _used() -> int:
    counter = BudgetCounter.objects.first()
    return counter.used if counter else 0


def test_it_persists_a_reservation_with_the_run_and_its_lease_owner(held):
    run, team_budgets = held

    budgets.reserve(team_budgets, 300, 0, run_id=run.pk, lease_owner=DEAD)

    row = BudgetReservation.objects.get()
    assert (row.run_id, row.lease_owner, row.amount, row.settled) == (run.pk, DEAD, 300, False)
    assert _used() == 300


def test_it_gives_back_a_dead_workers_reservation_when_another_worker_claims_the_run(held):
    run, team_budgets = held
    budgets.reserve(team_budgets, 300, 0, run_id=run.pk, lease_owner=DEAD)
    _expire(run)

    assert _claim(run.pk, TAKER) is not None

    assert _used() == 0
    assert not BudgetReservation.objects.exists()


def test_it_gives_back_a_settled_but_unrecorded_call_on_take_over(held):
    """The worker died after the call returned but before its usage was committed: the call is
    made again by the next worker, so its first usage must not stay counted."""
    run, team_budgets = held
    reservation = budgets.reserve(team_budgets, 300, 0, run_id=run.pk, lease_owner=DEAD)
    budgets.settle(reservation, 120, 0)
    assert _used() == 120
    _expire(run)

    _claim(run.pk, TAKER)

    assert _used() == 0


def test_it_refuses_a_reservation_by_a_worker_that_lost_the_run(held):
    run, team_budgets = held
    _expire(run)
    _claim(run.pk, TAKER)

    with pytest.raises(LeaseLost):
        budgets.reserve(team_budgets, 300, 0, run_id=run.pk, lease_owner=DEAD)

    assert _used() == 0
    assert not BudgetReservation.objects.exists()


def test_it_counts_a_usage_recorded_after_its_reservation_was_given_back(held):
    run, team_budgets = held
    reservation = budgets.reserve(team_budgets, 300, 0, run_id=run.pk, lease_owner=DEAD)
    receipt = budgets.settle(reservation, 120, 0)
    with transaction.atomic():
        budgets.release_run(run.pk)

    with transaction.atomic():
        budgets.record([receipt])

    assert _used() == 120


def test_it_gives_back_reservations_when_the_run_fails(held):
    run, team_budgets = held
    budgets.reserve(team_budgets, 300, 0, run_id=run.pk, lease_owner=DEAD)

    do_fail_run(run.pk, "internal error: boom")

    assert _used() == 0
    assert not BudgetReservation.objects.exists()


def test_it_sweeps_reservations_whose_owner_no_longer_holds_the_run(held):
    run, team_budgets = held
    budgets.reserve(team_budgets, 300, 0, run_id=run.pk, lease_owner=DEAD)
    Run.objects.filter(pk=run.pk).update(status="waiting_review", lease_owner="", lease_until=None)

    with transaction.atomic():
        assert budgets.release_orphaned() == 1

    assert _used() == 0

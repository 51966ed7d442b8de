"""Cancelling a run stops its in-flight steps, whether the runner or the database flag tells it."""

from __future__ import annotations

import time

import pytest

from orchestrator.actions import do_cancel_run, do_start_run
from orchestrator.actions.errors import Conflict
from orchestrator.models import Run, RunEvent, StepRun
from orchestrator.runners import get_runner
from tests.conftest import pipeline, run_spec, scripted

pytestmark = pytest.mark.django_db(transaction=True)

SLOW = {"steps": [{"kind": "parallel", "id": "fan", "branches": [
    {"kind": "agent", "id": "a", "agent": "slow", "prompt": "a"},
    {"kind": "agent", "id": "b", "agent": "slow", "prompt": "b"},
]}, {"kind": "agent", "id": "after", "agent": "slow", "prompt": "never"}]}


def _wait_status(run: Run, statuses: set[str], timeout: float = 10) -> Run:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.status in statuses:
            return run
        time.sleep(0.02)
    raise AssertionError(f"run stayed {run.status}")


def _wait_steps_running(run: Run, count: int) -> None:
    deadline = time.monotonic() + 10
    while StepRun.objects.filter(run=run, status="running", kind="agent").count() < count:
        assert time.monotonic() < deadline, "steps did not start"
        time.sleep(0.02)


def test_it_cancels_in_flight_parallel_steps_through_the_runner(team, owner):
    scripted(team, "slow", {"text": "late", "delay_ms": 20_000})
    run = do_start_run(pipeline(team, SLOW).latest_version(), {}, owner)
    get_runner().submit(run.pk)
    _wait_steps_running(run, 2)

    started = time.perf_counter()
    do_cancel_run(run, owner)
    run = _wait_status(run, {"cancelled"})

    assert time.perf_counter() - started < 2
    assert set(StepRun.objects.filter(run=run, kind="agent").values_list("status", flat=True)) == {"cancelled"}
    assert not StepRun.objects.filter(run=run, key="after").exists()
    assert RunEvent.objects.filter(run=run, type="run.cancelled").count() == 1


def test_it_stops_when_another_process_sets_the_cancel_flag(team, owner):
    """Only the database flag: the engine notices it at its next commit or poll."""
    scripted(team, "slow", {"text": "late", "delay_ms": 20_000})
    run = do_start_run(pipeline(team, SLOW).latest_version(), {}, owner)
    get_runner().submit(run.pk)
    _wait_steps_running(run, 2)

    Run.objects.filter(pk=run.pk).update(cancel_requested=True)
    run = _wait_status(run, {"cancelled"}, timeout=5)

    assert StepRun.objects.filter(run=run, status="cancelled").count() >= 2


def test_it_cancels_a_run_waiting_for_review_directly(team, owner):
    scripted(team, "w", {"text": "x"})
    run = run_spec(team, {"steps": [{"kind": "review", "id": "g", "instructions": "ok?"}]})
    assert run.status == "waiting_review"

    run = do_cancel_run(run, owner)

    assert run.status == "cancelled"
    assert run.review_items.get().status == "rejected"
    with pytest.raises(Conflict):
        do_cancel_run(run, owner)

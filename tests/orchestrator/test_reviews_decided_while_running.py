# Found by an outside review (2026-12-07, a reading of that day's fixes); failed before its fix.
"""A run that pauses with every review item already decided goes on (`test_reviews_while_running.py`).
The first fix resumed it after the pause and got two states wrong: a cancel requested just
before the pause commit (the last commit does not act on the flag: the run was queued for
ever), and a concurrent-runs slot given away while the run was paused (a paused run is not an
active run). Now the pause commit itself keeps such a run queued, and a pause that carries a
cancel flag is finished as cancelled."""

from __future__ import annotations

import threading

import pytest
from asgiref.sync import async_to_sync

from orchestrator.actions import do_start_run
from orchestrator.actions.errors import ActionError
from orchestrator.actions.runs import finish_unheld_cancels, stuck_runs
from orchestrator.execution import _finish_paused_cancel, execute_run
from orchestrator.models import (
    Limit,
    LimitKind,
    LimitScope,
    ReviewItem,
    Run,
    RunStatus,
)
from tests.conftest import execute, pipeline, scripted

pytestmark = pytest.mark.django_db(transaction=True)

SPEC = {"steps": [{"kind": "parallel", "id": "fan", "branches": [
    {"kind": "review", "id": "gate", "instructions": "ok?"},
    {"kind": "agent", "id": "slow", "agent": "slow", "prompt": "go"},
]}]}


def _in_thread(fn):
    """Run `fn` on a thread of its own (its own connection) and wait: from a listener, which
    runs on the run's event loop, where the ORM may not be used."""
    box: dict = {}

    def target():
        from django.db import connection
        try:
            box["value"] = fn()
        except Exception as exc:
            box["error"] = exc
        finally:
            connection.close()

    t = threading.Thread(target=target)
    t.start()
    t.join(30)
    return box


def test_a_cancel_that_lands_before_the_pause_is_not_turned_into_a_queued_run_for_ever(team, owner):
    """State the engine's final (pause) commit leaves when a cancel was requested just before it
    (`commit(final=True)` never raises RunCancelled): waiting_review, cancel_requested, and the
    only item decided meanwhile. It was set queued; no claim takes a cancel-requested run, no
    sweep sends or finishes a queued one (stuck_runs excludes cancel_requested;
    finish_unheld_cancels looks at running runs only): it stayed `queued` for ever, holding a
    concurrent-runs slot, its cancel never carried out. Now finished as cancelled."""
    scripted(team, "slow", {"text": "late"})
    run = do_start_run(pipeline(team, SPEC).latest_version(), {}, owner, submit=False)
    ReviewItem.objects.create(team=team, run=run, step_key="fan.gate", reason="review", context={},
                              status=ReviewItem.Status.APPROVED, decision={"action": "approve", "note": ""})
    Run.objects.filter(pk=run.pk).update(status=RunStatus.WAITING_REVIEW, cancel_requested=True)

    _finish_paused_cancel(run.pk)  # what execute_run does right after such a pause
    async_to_sync(execute_run)(run.pk)  # …and then its claim, again
    finish_unheld_cancels()  # beat's sweep
    swept = list(stuck_runs(queued_for_s=0).values_list("pk", flat=True))

    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED and run.review_items.filter(status="pending").count() == 0, (
        f"run is {run.status} with cancel_requested={run.cancel_requested}; the sweep sends {swept}: "
        "no claim or sweep will ever move it (it should have been finished as cancelled)")


def test_the_resume_after_a_pause_respects_the_concurrent_runs_limit(team, owner):
    """While the run is paused (waiting_review is not an active status) a start takes the team's
    only slot; the resume that follows passes no limit check (`check_concurrency=False`, on the
    belief that the run "held its place among the active runs all along"), so two runs are
    active under a limit of one."""
    Limit.objects.create(team=team, scope=LimitScope.TEAM, kind=LimitKind.CONCURRENT_RUNS, value=1)
    scripted(team, "slow", {"text": "late", "delay_ms": 300})
    scripted(team, "other", {"text": "x"})
    run = do_start_run(pipeline(team, SPEC).latest_version(), {}, owner, submit=False)
    other = pipeline(team, {"steps": [{"kind": "agent", "id": "a", "agent": "other", "prompt": "go"}]}, name="q")
    seen: dict = {"decided": False, "started": None}

    def listener(payload):
        if not seen["decided"]:
            item = _in_thread(lambda: ReviewItem.objects.filter(run_id=run.pk, status="pending").first()).get("value")
            if item is not None:
                from orchestrator.actions import do_decide_review

                box = _in_thread(lambda: do_decide_review(item, owner, "approve", note="fine"))
                assert "error" not in box, box
                seen["decided"] = True
        if payload["type"] == "run.waiting_review" and seen["started"] is None:
            # The run just paused: its slot is free for a moment. Another start takes it.
            box = _in_thread(lambda: do_start_run(other.latest_version(), {}, owner, submit=False))
            seen["started"] = box.get("value") or box.get("error")
    execute(run, listeners=[listener])
    assert seen["decided"], "the gate was not decided while the run ran (test setup)"
    started = seen["started"]
    assert started is not None, "the run never paused (test setup)"
    assert isinstance(started, ActionError), (
        f"run {started.pk} took the only slot while run {run.pk} paused with nothing left to decide")
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.status

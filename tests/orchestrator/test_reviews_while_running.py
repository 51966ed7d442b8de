# Found by an outside review (2026-12-07, the review queue outside a console); failed before its fix.
"""A review item of a parallel branch is committed (and announced) while its sibling branch
still runs: the run is `running`, not `waiting_review`. What a decision or a cancel then does."""

from __future__ import annotations

import time

import pytest

from orchestrator.actions import do_cancel_run, do_start_run
from orchestrator.models import ReviewItem, Run
from orchestrator.runners import get_runner
from tests.conftest import pipeline, scripted

pytestmark = pytest.mark.django_db(transaction=True)

SPEC = {"steps": [{"kind": "parallel", "id": "fan", "branches": [
    {"kind": "review", "id": "gate", "instructions": "ok?"},
    {"kind": "agent", "id": "slow", "agent": "slow", "prompt": "go"},
]}]}


def _wait(predicate, timeout: float = 15, what: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _started_with_pending_gate(team, owner, delay_ms: int) -> tuple[Run, ReviewItem]:
    scripted(team, "slow", {"text": "late", "delay_ms": delay_ms})
    run = do_start_run(pipeline(team, SPEC).latest_version(), {}, owner)
    get_runner().submit(run.pk)
    item = _wait(lambda: ReviewItem.objects.filter(run=run, status="pending").first(), what="the gate's item")
    run.refresh_from_db()
    assert run.status == "running", run.status  # the sibling branch still runs
    return run, item


def test_a_decision_taken_while_the_sibling_runs_does_not_strand_the_run(team, owner):
    """Deciding the committed item while the run is still running (review.needed was already
    sent) is honoured: it was accepted and then ignored, and the run paused in `waiting_review`
    with nothing left to decide, for ever. Now the run goes on when its sibling ends."""
    from orchestrator.actions import do_decide_review

    run, item = _started_with_pending_gate(team, owner, delay_ms=1500)
    do_decide_review(item, owner, "approve", note="fine")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.status in ("succeeded", "failed"):
            break
        time.sleep(0.05)
    pending = ReviewItem.objects.filter(run=run, status="pending").count()
    assert run.status == "succeeded", (f"run is {run.status} with {pending} pending review items "
                                       f"after its only item was approved")


def test_cancelling_a_held_run_closes_its_pending_review_items(team, owner):
    """A cancel of a run nothing holds closes its pending items (README); a run a worker holds
    is finished by that worker, which left the branch's item pending in the queue for ever."""
    run, item = _started_with_pending_gate(team, owner, delay_ms=20_000)
    do_cancel_run(run, owner, reason="stop")
    _wait(lambda: Run.objects.get(pk=run.pk).status == "cancelled", what="the cancel")
    item.refresh_from_db()
    assert item.status == "rejected" and item.decision["note"] == "run cancelled", item.decision
    from orchestrator.actions import do_decide_review
    from orchestrator.actions.errors import Conflict

    with pytest.raises(Conflict):
        do_decide_review(item, owner, "approve")

"""A run a reviewer rejected and someone resumes asks again instead of hanging with an empty queue."""

from __future__ import annotations

import pytest

from orchestrator.actions import do_decide_review
from orchestrator.actions.runs import do_resume_run
from tests.conftest import execute, run_spec, scripted

pytestmark = pytest.mark.django_db(transaction=True)

GATED = {"steps": [
    {"kind": "agent", "id": "draft", "agent": "writer", "prompt": "draft it"},
    {"kind": "review", "id": "gate", "instructions": "Publishable?", "show": "{{ steps.draft.output }}"},
    {"kind": "agent", "id": "publish", "agent": "publisher", "prompt": "publish: {{ steps.gate.output }}"},
]}


def test_it_queues_a_new_review_when_a_rejected_run_is_resumed(team, owner):
    scripted(team, "writer", {"text": "first draft"})
    scripted(team, "publisher", {"text": "{{prompt}}"})
    run = run_spec(team, GATED)
    do_decide_review(run.review_items.get(), owner, "reject", note="off-brand", submit=False)
    run = execute(run)
    assert run.status == "failed"

    do_resume_run(run, owner, submit=False)
    run = execute(run)

    pending = run.review_items.filter(status="pending")
    assert run.status == "waiting_review"
    assert pending.count() == 1, "a run waiting for review must have an item in the queue"


def test_it_queues_a_new_review_when_a_rejected_failure_is_resumed(team, owner):
    scripted(team, "flaky", {"text": "worked", "error": "model down", "retryable": False, "fail_attempts": [1]})
    run = run_spec(team, {"steps": [{"kind": "agent", "id": "s", "agent": "flaky", "prompt": "go"}]})
    do_decide_review(run.review_items.get(), owner, "reject", note="no", submit=False)
    run = execute(run)
    assert run.status == "failed"

    do_resume_run(run, owner, submit=False)
    run = execute(run)

    assert run.status == "waiting_review"
    assert run.review_items.filter(status="pending").count() == 1

"""Review gates, failures and budget stops pause the run; decisions continue it from there."""

from __future__ import annotations

import pytest

from orchestrator.actions import do_decide_review
from orchestrator.actions.errors import ActionError, Conflict
from orchestrator.models import RunEvent, StepRun, UsageRecord
from tests.conftest import execute, pipeline, run_spec, scripted, start

pytestmark = pytest.mark.django_db(transaction=True)

GATED = {"steps": [
    {"kind": "agent", "id": "draft", "agent": "writer", "prompt": "draft it"},
    {"kind": "review", "id": "gate", "instructions": "Is the draft publishable?", "show": "{{ steps.draft.output }}"},
    {"kind": "agent", "id": "publish", "agent": "publisher", "prompt": "publish: {{ steps.gate.output }}"},
]}


@pytest.fixture
def gated(team):
    scripted(team, "writer", {"text": "first draft"})
    scripted(team, "publisher", {"text": "{{prompt}}"})
    run = run_spec(team, GATED)
    assert run.status == "waiting_review"
    return run


def test_it_pauses_at_a_review_gate_with_the_context(gated):
    item = gated.review_items.get()
    assert (item.reason, item.step_key, item.status) == ("gate", "gate", "pending")
    assert item.context["instructions"] == "Is the draft publishable?"
    assert item.context["show"] == "first draft"
    assert StepRun.objects.get(run=gated, key="gate").status == "waiting_review"
    assert not StepRun.objects.filter(run=gated, key="publish").exists()


def test_it_continues_with_the_edited_output_after_approval(gated, owner):
    do_decide_review(gated.review_items.get(), owner, "approve", output="edited draft", submit=False)
    run = execute(gated)

    assert run.status == "succeeded"
    assert run.output["result"] == "publish: edited draft"
    decided = RunEvent.objects.get(run=run, type="review.decided")
    assert decided.data["by"] == "owner" and decided.data["action"] == "approve"
    # the draft step was not run again
    assert UsageRecord.objects.filter(run=run, step_key="draft").count() == 1


def test_it_continues_with_the_shown_output_when_approved_unchanged(gated, owner):
    do_decide_review(gated.review_items.get(), owner, "approve", submit=False)
    assert execute(gated).output["result"] == "publish: first draft"


def test_it_fails_the_run_when_the_gate_is_rejected(gated, owner):
    do_decide_review(gated.review_items.get(), owner, "reject", note="off-brand", submit=False)
    run = execute(gated)

    assert run.status == "failed"
    assert "rejected by reviewer: off-brand" in run.error


def test_it_refuses_a_second_decision_and_unknown_actions(gated, owner):
    item = gated.review_items.get()
    with pytest.raises(ActionError):
        do_decide_review(item, owner, "shrug", submit=False)
    do_decide_review(item, owner, "approve", submit=False)
    with pytest.raises(Conflict):
        do_decide_review(item, owner, "reject", note="too late", submit=False)


def test_it_retries_a_failed_step_as_a_new_attempt_when_the_reviewer_asks(team, owner):
    scripted(team, "flaky", {"text": "worked", "error": "model down", "retryable": False, "fail_attempts": [1]})
    run = run_spec(team, {"steps": [{"kind": "agent", "id": "s", "agent": "flaky", "prompt": "go"}]})
    assert run.status == "waiting_review"
    item = run.review_items.get()
    assert item.reason == "failure" and item.context["error"] == "model down"

    do_decide_review(item, owner, "retry", submit=False)
    run = execute(run)

    assert run.status == "succeeded" and run.output["result"] == "worked"
    assert StepRun.objects.get(run=run, key="s").attempt == 2


def test_it_stops_at_the_token_budget_and_queues_a_review(team, owner):
    scripted(team, "big", {"text": "x" * 40, "usage": {"input_tokens": 60, "output_tokens": 40}})
    spec = {"limits": {"max_tokens": 150}, "steps": [
        {"kind": "agent", "id": f"s{i}", "agent": "big", "prompt": "go"} for i in range(3)]}
    run = start(pipeline(team, spec))
    run = execute(run)

    assert run.status == "waiting_review"
    # two calls of 100 tokens: the second crossed 150, so the third is refused before calling
    assert run.input_tokens + run.output_tokens == 200
    assert UsageRecord.objects.filter(run=run).count() == 2
    item = run.review_items.get()
    assert item.reason == "budget" and item.step_key == "s2"
    assert "token budget reached: 200 of 150" in item.context["error"]

    do_decide_review(item, owner, "resume", raise_budget={"max_tokens": 1000}, submit=False)
    run = execute(run)
    assert run.status == "succeeded"
    assert UsageRecord.objects.filter(run=run).count() == 3


def test_it_does_not_let_an_old_decision_answer_a_new_pause(team, owner):
    scripted(team, "big", {"text": "x", "usage": {"input_tokens": 100, "output_tokens": 0}})
    spec = {"limits": {"max_tokens": 50}, "steps": [{"kind": "agent", "id": "s", "agent": "big", "prompt": "go"},
                                                    {"kind": "agent", "id": "t", "agent": "big", "prompt": "go"},
                                                    {"kind": "agent", "id": "u", "agent": "big", "prompt": "go"}]}
    run = execute(start(pipeline(team, spec)))
    assert run.review_items.get().step_key == "t"
    # Raised, but only enough for one more call: the run stops at its budget again.
    do_decide_review(run.review_items.get(), owner, "resume", raise_budget={"max_tokens": 150}, submit=False)
    run = execute(run)

    assert run.status == "waiting_review"
    pending = run.review_items.filter(status="pending")
    assert pending.count() == 1 and pending.get().step_key == "u"
    assert UsageRecord.objects.filter(run=run).count() == 2


def test_it_refuses_a_resume_that_would_stop_at_the_budget_again(team, owner):
    scripted(team, "big", {"text": "x", "usage": {"input_tokens": 100, "output_tokens": 0}})
    spec = {"limits": {"max_tokens": 50}, "steps": [{"kind": "agent", "id": "s", "agent": "big", "prompt": "go"},
                                                    {"kind": "agent", "id": "t", "agent": "big", "prompt": "go"}]}
    run = execute(start(pipeline(team, spec)))
    item = run.review_items.get()

    with pytest.raises(Conflict, match="Raise the budget first"):
        do_decide_review(item, owner, "resume", submit=False)  # budget not raised
    item.refresh_from_db()
    assert item.status == "pending"


def test_it_lets_a_budget_stop_be_rejected_without_room(team, owner):
    scripted(team, "big", {"text": "x", "usage": {"input_tokens": 100, "output_tokens": 0}})
    spec = {"limits": {"max_tokens": 50}, "steps": [{"kind": "agent", "id": "s", "agent": "big", "prompt": "go"},
                                                    {"kind": "agent", "id": "t", "agent": "big", "prompt": "go"}]}
    run = execute(start(pipeline(team, spec)))

    decided = do_decide_review(run.review_items.get(), owner, "reject", note="not worth more tokens", submit=False)

    assert decided.status == "rejected"
    assert execute(run).status == "failed"


def test_it_needs_a_reason_to_reject(gated, owner):
    with pytest.raises(ActionError, match="reason"):
        do_decide_review(gated.review_items.get(), owner, "reject", note="  ", submit=False)

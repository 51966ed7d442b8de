"""Deciding review items through the queue's views continues the run (on the inline runner)."""

from __future__ import annotations

import time

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.test import AsyncClient, Client

from orchestrator.actions import do_add_member
from orchestrator.models import ReviewItem, Run, RunEvent, StepRun, UsageRecord
from tests.conftest import execute, pipeline, run_spec, scripted, start

pytestmark = pytest.mark.django_db(transaction=True)

GATED = {"steps": [
    {"kind": "review", "id": "gate", "instructions": "ok?", "show": "first draft"},
    {"kind": "agent", "id": "publish", "agent": "publisher", "prompt": "publish: {{ steps.gate.output }}"},
]}


@pytest.fixture
def reviewer(team):
    user = get_user_model().objects.create_user("rita", password="pw-rita-12345")
    do_add_member(team, user, "reviewer")
    return user


@pytest.fixture
def client_for(reviewer):
    client = Client()
    client.force_login(reviewer)
    return client


@pytest.fixture
def gated(team) -> Run:
    scripted(team, "publisher", {"text": "{{prompt}}"})
    run = run_spec(team, GATED)
    assert run.status == "waiting_review"
    return run


def wait_for(run: Run, *statuses: str, timeout: float = 30) -> Run:
    """Poll the database until the inline runner has taken the run to one of `statuses`."""
    deadline = time.monotonic() + timeout
    while True:
        run.refresh_from_db()
        if run.status in statuses:
            return run
        assert time.monotonic() < deadline, f"run {run.pk} is {run.status}, expected {statuses}"
        time.sleep(0.05)


def decide(client: Client, item: ReviewItem, **data: str):
    return client.post(f"/review/{item.pk}/decide/", data)


def test_it_approves_a_gate_and_the_run_finishes(client_for, gated, reviewer):
    item = gated.review_items.get()

    response = decide(client_for, item, submit="approve")

    assert response.status_code == 302
    run = wait_for(gated, "succeeded", "failed")
    assert run.status == "succeeded"
    assert run.output["result"] == "publish: first draft"
    item.refresh_from_db()
    assert (item.status, item.decided_by) == ("approved", reviewer)


def test_it_resumes_the_run_when_decided_through_the_asgi_handler(gated, reviewer):
    """As under daphne: the resumed run must not inherit the request's (soon gone) executor."""
    client = AsyncClient()
    client.force_login(reviewer)

    response = async_to_sync(client.post)(f"/review/{gated.review_items.get().pk}/decide/", {"submit": "approve"})

    assert response.status_code == 302
    assert wait_for(gated, "succeeded", "failed").status == "succeeded"


def test_it_continues_with_the_edited_output(client_for, gated):
    decide(client_for, gated.review_items.get(), submit="edit", output="edited draft", output_json="0")

    run = wait_for(gated, "succeeded", "failed")
    assert run.output["result"] == "publish: edited draft"


def test_it_rejects_with_a_note_and_the_run_fails(client_for, gated):
    item = gated.review_items.get()

    decide(client_for, item, submit="reject", note="off-brand")

    run = wait_for(gated, "failed", "succeeded")
    assert run.status == "failed" and "off-brand" in run.error
    item.refresh_from_db()
    assert item.status == "rejected" and item.decision["note"] == "off-brand"
    assert not StepRun.objects.filter(run=run, key="publish").exists()


def test_it_retries_a_failed_step(client_for, team):
    scripted(team, "flaky", {"text": "worked", "error": "model down", "retryable": False, "fail_attempts": [1]})
    run = run_spec(team, {"steps": [{"kind": "agent", "id": "s", "agent": "flaky", "prompt": "go"}]})
    item = run.review_items.get()
    assert item.reason == "failure"

    decide(client_for, item, submit="retry")

    run = wait_for(run, "succeeded", "failed", "waiting_review")
    assert run.status == "succeeded" and run.output["result"] == "worked"
    assert StepRun.objects.get(run=run, key="s").attempt == 2


def test_it_resumes_a_budget_stop_with_a_raised_token_budget(client_for, team):
    scripted(team, "big", {"text": "x", "usage": {"input_tokens": 60, "output_tokens": 40}})
    spec = {"limits": {"max_tokens": 150}, "steps": [
        {"kind": "agent", "id": f"s{i}", "agent": "big", "prompt": "go"} for i in range(3)]}
    run = execute(start(pipeline(team, spec)))
    item = run.review_items.get()
    assert item.reason == "budget"

    decide(client_for, item, submit="resume", max_tokens="1000", max_cost_usd="")

    run = wait_for(run, "succeeded", "failed", "waiting_review")
    assert run.status == "succeeded"
    assert run.limits["max_tokens"] == 1000
    assert UsageRecord.objects.filter(run=run).count() == 3


def test_it_resumes_with_a_raised_dollar_budget(client_for, team):
    scripted(team, "big", {"text": "x", "usage": {"input_tokens": 60, "output_tokens": 40}})
    spec = {"limits": {"max_tokens": 150}, "steps": [
        {"kind": "agent", "id": f"s{i}", "agent": "big", "prompt": "go"} for i in range(3)]}
    run = execute(start(pipeline(team, spec)))

    decide(client_for, run.review_items.get(), submit="resume", max_tokens="5000", max_cost_usd="2.5")

    run = wait_for(run, "succeeded", "failed", "waiting_review")
    assert run.limits == {"max_tokens": 5000, "max_cost_usd": 2.5}


def test_it_refuses_an_edited_output_that_is_not_the_json_it_should_be(client_for, gated):
    item = gated.review_items.get()

    response = decide(client_for, item, submit="edit", output="{not json", output_json="1")

    assert response.status_code == 400
    assert "not valid JSON" in response.content.decode()
    assert "{not json" in response.content.decode()  # the edit is kept for fixing
    item.refresh_from_db()
    assert item.status == "pending"


def test_it_refuses_a_budget_that_is_not_positive(client_for, team):
    scripted(team, "big", {"text": "x", "usage": {"input_tokens": 200, "output_tokens": 0}})
    run = execute(start(pipeline(team, {"limits": {"max_tokens": 50}, "steps": [
        {"kind": "agent", "id": "a", "agent": "big", "prompt": "go"},
        {"kind": "agent", "id": "b", "agent": "big", "prompt": "go"}]})))
    item = run.review_items.get()

    response = decide(client_for, item, submit="resume", max_tokens="-5")

    assert response.status_code == 400
    item.refresh_from_db()
    assert item.status == "pending"


def test_it_reports_a_conflict_when_someone_decided_first(client_for, gated):
    item = gated.review_items.get()
    decide(client_for, item, submit="approve")
    wait_for(gated, "succeeded", "failed")

    response = decide(client_for, item, submit="reject", note="too late")

    assert response.status_code == 409
    assert "already decided" in response.content.decode()


def test_it_records_the_decision_in_the_runs_trace(client_for, gated):
    decide(client_for, gated.review_items.get(), submit="approve", note="looks good")
    wait_for(gated, "succeeded", "failed")

    event = RunEvent.objects.get(run=gated, type="review.decided")
    assert event.data["by"] == "rita" and event.data["note"] == "looks good"


def test_it_forbids_viewers_to_decide(gated, teammate):
    client = Client()
    client.force_login(teammate)  # a viewer
    item = gated.review_items.get()

    assert decide(client, item, submit="approve").status_code == 403
    item.refresh_from_db()
    assert item.status == "pending"


def test_it_uses_the_edit_when_the_plain_approve_button_is_pressed(client_for, gated):
    """One approve button: a reviewer who typed an edit and pressed Approve gets the edit."""
    decide(client_for, gated.review_items.get(), submit="approve", output="edited\r\ndraft\r\n", output_json="0")

    run = wait_for(gated, "succeeded", "failed")
    assert run.output["result"] == "publish: edited\ndraft\n"


def test_it_approves_unchanged_text_as_a_plain_approval(client_for, gated):
    item = gated.review_items.get()
    decide(client_for, item, submit="approve", output="first draft\r\n", output_json="0")

    run = wait_for(gated, "succeeded", "failed")
    assert run.output["result"] == "publish: first draft"
    item.refresh_from_db()
    assert "output" not in item.decision


def test_it_asks_for_the_reason_before_rejecting(client_for, gated):
    item = gated.review_items.get()

    response = decide(client_for, item, submit="reject", note="  ")

    assert response.status_code == 400
    assert b"say why you reject it" in response.content
    item.refresh_from_db()
    assert item.status == "pending"


def test_it_offers_one_approve_button_and_a_confirmed_reject(client_for, gated):
    page = client_for.get(f"/review/{gated.review_items.get().pk}/").content.decode()

    assert page.count('name="submit" value="approve"') == 1
    assert 'value="edit"' not in page
    assert 'data-confirm="Reject this item?' in page and 'data-requires="note"' in page

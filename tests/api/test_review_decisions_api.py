"""A review decision's raised budget is checked before it is saved: a bad one is a 422 that
changes nothing (400, naming the field; 422 where the schema refuses it first); it used to be saved, and the run then failed at its next claim ("internal
error: ValidationError … Limits") with no way to repair its limits. (Found by a review.)"""

from __future__ import annotations

import time

import pytest

from orchestrator.actions import do_start_run
from orchestrator.models import ReviewItem, Run
from tests.conftest import execute, pipeline

pytestmark = pytest.mark.django_db(transaction=True)
GATE = {"steps": [{"kind": "review", "id": "g", "instructions": "ok?"},
                  {"kind": "agent", "id": "a", "agent": "w", "prompt": "x"}]}


@pytest.mark.parametrize("budget", [{"max_tokens": 0}, {"max_tokens": 1.5}, {"bogus": 1},
                                    {"max_cost_usd": -1}, {"max_cost_usd": "lots"}])
def test_a_bad_raised_budget_is_refused_and_changes_nothing(api, keys, budget):
    run = execute(do_start_run(pipeline(keys["team"], GATE).latest_version(), {}, submit=False))
    item = ReviewItem.objects.get(run=run)
    status, body = api.call("post", f"/reviews/{item.pk}/decide", keys["reviewer"],
                            {"action": "approve", "raise_budget": budget})
    assert status in (400, 422) and "raise_budget" in str(body), (status, body)
    run.refresh_from_db()
    assert (ReviewItem.objects.get(pk=item.pk).status, run.status, run.limits) == ("pending", "waiting_review", {})


def test_a_good_raised_budget_is_kept_and_the_run_goes_on(api, keys):
    from decimal import Decimal

    from orchestrator.models import ModelPrice

    # (priced: a dollar budget on an unpriced model refuses the call)
    ModelPrice.objects.create(provider="scripted", model="scripted-1", input_per_mtok=Decimal(1), output_per_mtok=Decimal(1))
    run = execute(do_start_run(pipeline(keys["team"], GATE).latest_version(), {}, submit=False))
    item = ReviewItem.objects.get(run=run)
    status, body = api.call("post", f"/reviews/{item.pk}/decide", keys["reviewer"],
                            {"action": "approve", "raise_budget": {"max_tokens": 5000, "max_cost_usd": 2}})
    assert status == 200, body
    deadline = time.monotonic() + 30  # the inline runner goes on in the background: let it end
    while Run.objects.filter(pk=run.pk, status__in=["queued", "running"]).exists():
        assert time.monotonic() < deadline, "the run did not end"
        time.sleep(0.05)
    run.refresh_from_db()
    assert run.limits == {"max_tokens": 5000, "max_cost_usd": 2}
    assert run.status == "succeeded", run.error


def test_claiming_through_the_api_is_announced_on_the_run(api, keys):
    """A claim through the API takes the action's path: the run's trace gets `review.claimed`
    (the endpoint used to update the item itself, and no event was written)."""
    from orchestrator.models import RunEvent

    run = execute(do_start_run(pipeline(keys["team"], GATE).latest_version(), {}, submit=False))
    item = ReviewItem.objects.get(run=run)
    status, body = api.call("post", f"/reviews/{item.pk}/claim", keys["reviewer"], None)
    assert status == 200 and body["assigned_to"] == keys["users"]["reviewer"].pk, body
    claimed = [e.data for e in RunEvent.objects.filter(run=run, type="review.claimed")]
    assert claimed == [{"review_id": item.pk, "assignee": "reviewer", "by": "reviewer"}], claimed
    do_decide = api.call("post", f"/reviews/{item.pk}/decide", keys["reviewer"], {"action": "reject", "note": "no"})
    assert do_decide[0] == 200, do_decide
    status, body = api.call("post", f"/reviews/{item.pk}/claim", keys["reviewer"], None)
    assert status == 409 and "already decided" in str(body), (status, body)

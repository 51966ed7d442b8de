"""A reviewer's NaN, Infinity or 1e400 — an edited JSON output, a raised budget — is a 400
naming the field; it reached a JSON column and answered a 500 (found by a review of the fix
for specs and run inputs)."""

from __future__ import annotations

import pytest
from django.test import Client

from orchestrator.actions import do_start_run
from orchestrator.models import ReviewItem, Run
from tests.conftest import execute, pipeline

pytestmark = pytest.mark.django_db(transaction=True)
GATE = {"steps": [{"kind": "review", "id": "g", "instructions": "ok?"},
                  {"kind": "agent", "id": "a", "agent": "w", "prompt": "x"}]}


def _item(keys):
    run = execute(do_start_run(pipeline(keys["team"], GATE).latest_version(), {}, submit=False))
    return ReviewItem.objects.get(run=run)


@pytest.mark.parametrize("form, field", [
    ({"submit": "approve", "output": '{"score": NaN}', "output_json": "1"}, "output"),
    ({"submit": "approve", "output": '{"score": 1e400}', "output_json": "1"}, "output"),
])
def test_a_reviewers_non_finite_number_in_the_dashboard_is_refused(keys, form, field):
    item = _item(keys)
    client = Client(raise_request_exception=False)
    client.force_login(keys["users"]["reviewer"])
    response = client.post(f"/review/{item.pk}/decide/", form)
    item.refresh_from_db()
    text = response.content.decode()
    assert response.status_code == 400 and ("not a JSON number" in text or "not a finite number" in text), text[-2000:]
    assert item.status == "pending" and Run.objects.get(pk=item.run_id).limits == {}


@pytest.mark.parametrize("body", ['{"action": "approve", "output": {"score": NaN}}',
                                  '{"action": "approve", "raise_budget": {"max_cost_usd": 1e400}}'])
def test_a_reviewers_non_finite_number_in_the_api_is_refused(keys, body):
    item = _item(keys)
    response = Client(raise_request_exception=False).post(
        f"/api/v1/reviews/{item.pk}/decide", body, content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {keys['reviewer']}")
    item.refresh_from_db()
    assert response.status_code in (400, 422) and (b"finite" in response.content), response.content[:300]
    assert item.status == "pending"

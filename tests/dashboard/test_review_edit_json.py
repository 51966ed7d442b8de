# Found by an outside review (2026-12-07, the live pages); failed before its fix.
"""Review: the review page's "edit output (JSON)" text is read with a plain json.loads:
- a key written twice keeps the last value silently (the README: a repeated key is refused
  in any JSON the instance reads, never "the last one wins");
- JSON nested deeper than the recursion limit is a 500 (RecursionError), not a 400."""
from __future__ import annotations

import pytest
from django.test import Client

from orchestrator.models import ReviewItem
from tests.conftest import execute, pipeline, scripted, start

pytestmark = pytest.mark.django_db(transaction=True)


def _gate(team):
    scripted(team, "w", {"text": '{"verdict": "ok"}'})
    spec = {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "x", "output_format": "json"},
                      {"kind": "review", "id": "g", "instructions": "ok?", "show": "{{ steps.a.output }}"}]}
    run = execute(start(pipeline(team, spec)))
    assert run.status == "waiting_review"
    return run.review_items.get()


def _client(user):
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


def test_an_edited_output_with_a_repeated_key_is_refused(team, owner):
    item = _gate(team)
    response = _client(owner).post(f"/review/{item.pk}/decide/", {
        "submit": "approve", "output": '{"verdict": "reject", "verdict": "ship"}', "output_json": "1"})
    item.refresh_from_db()
    assert response.status_code == 400 and item.status == ReviewItem.Status.PENDING, (
        f"answered {response.status_code}; item {item.status} with decision {item.decision}: "
        "the first 'verdict' was dropped silently")


def test_a_deeply_nested_edited_output_is_a_400_not_a_500(team, owner):
    item = _gate(team)
    response = _client(owner).post(f"/review/{item.pk}/decide/", {
        "submit": "approve", "output": "[" * 100_000 + "]" * 100_000, "output_json": "1"})
    assert response.status_code == 400, f"a 100,000-deep edited output answered {response.status_code}"

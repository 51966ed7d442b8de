# Found by an outside review (2026-12-07, the live pages); failed before its fix.
"""Review: the decide form writes the output as `<textarea>{{ edit_text }}</textarea>`; HTML
drops one newline right after `<textarea>`, so an output that starts with a newline (models
often answer "\n\n…") comes back one newline short, and an untouched Approve is recorded as
"Approved with edits" with the changed output (Django's own Textarea widget writes "\n" first
for this reason)."""
from __future__ import annotations

import pytest

from orchestrator.models import ReviewItem
from tests.conftest import execute, pipeline, scripted, start
from tests.e2e.conftest import off_this_thread, sign_in

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_untouched_approve_keeps_an_output_that_starts_with_a_newline(live_app, page, team):
    def setup():
        scripted(team, "w", {"text": "\n\nDraft: ship it"})
        spec = {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "x"},
                          {"kind": "review", "id": "g", "instructions": "ok?", "show": "{{ steps.a.output }}"}]}
        run = execute(start(pipeline(team, spec)))
        assert run.status == "waiting_review", run.status
        return run.review_items.get()

    item = off_this_thread(setup)
    assert item.context["show"].startswith("\n\n"), item.context["show"]
    sign_in(page, live_app, "owner", "pw-owner-123")
    page.goto(f"{live_app}/review/{item.pk}/")
    page.click(".decide-form button[value=approve]")
    page.wait_for_load_state("load")
    item.refresh_from_db()
    assert item.status == ReviewItem.Status.APPROVED
    assert "output" not in item.decision, (
        f"Approve without touching the text recorded an edited output {item.decision.get('output')!r} "
        f"(shown {item.context['show']!r})")

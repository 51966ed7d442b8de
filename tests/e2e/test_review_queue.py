"""The review queue in a real browser: a run paused at a gate is approved from the queue and
finishes on the server's inline runner; a viewer sees the queue without decide buttons."""

from __future__ import annotations

import time

import pytest
from django.contrib.auth import get_user_model

from orchestrator.actions import do_add_member, do_create_pipeline, do_start_run
from orchestrator.demo import seed_demo
from orchestrator.models import Run
from tests.conftest import execute, scripted
from tests.e2e.conftest import off_this_thread, screenshot, sign_in

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "pw-admin-12345"
GATED = {"description": "Docs behind a sign-off.", "steps": [
    {"kind": "review", "id": "sign_off", "instructions": "Ship these docs?",
     "show": "## add(a, b)\n\nReturns the **sum** of `a` and `b`.\n\n<script>alert('not markup')</script>"},
    {"kind": "agent", "id": "publish", "agent": "publisher", "prompt": "Publish: {{ steps.sign_off.output }}"},
]}




def gated_run() -> Run:
    """The demo data, and a run paused at a review gate before the browser opens."""

    def setup() -> Run:
        team, _, _ = seed_demo(password=PASSWORD)
        scripted(team, "publisher", {"text": "published: {{prompt}}"})
        pipe = do_create_pipeline(team, "Docs sign-off", GATED)
        return execute(do_start_run(pipe.latest_version(), {}, submit=False))

    run = off_this_thread(setup)
    assert run.status == "waiting_review"
    return run


def wait_for_status(run: Run, status: str, timeout: float = 30) -> Run:
    deadline = time.monotonic() + timeout
    while True:
        run.refresh_from_db()
        if run.status == status:
            return run
        assert time.monotonic() < deadline, f"run {run.pk} stayed {run.status} (error: {run.error!r})"
        time.sleep(0.2)


def test_it_approves_a_paused_run_from_the_queue_and_the_run_finishes(live_app, page):
    run = gated_run()
    item = run.review_items.get()

    sign_in(page, live_app, "admin", PASSWORD)
    assert page.locator("#review-count").inner_text() == "1"
    page.click("nav.links a[data-nav=review]")
    page.wait_for_url(f"{live_app}/review/")
    row = page.locator(f"#review-{item.pk}")
    assert row.locator(".reason").inner_text() == "Review gate"
    assert "Ship these docs?" in row.inner_text()
    assert row.locator(f'a[href="/runs/{run.pk}/"]').count() == 1
    screenshot(page, "review-queue")

    row.locator("button.decide[value=approve]").click()
    page.wait_for_url(f"{live_app}/review/")

    assert "Approved" in page.locator(".messages").inner_text()
    assert page.locator(f"#review-{item.pk}").count() == 0
    run = wait_for_status(run, "succeeded")
    assert run.output["result"].startswith("published: Publish: ## add(a, b)")
    item.refresh_from_db()
    assert item.status == "approved" and item.decided_by.username == "admin"

    page.goto(f"{live_app}/review/?tab=decided")
    assert page.locator(f"#review-{item.pk} .decided-by").inner_text() == "admin"


def test_it_shows_the_gates_context_safely_on_the_item_page(live_app, page):
    run = gated_run()
    item = run.review_items.get()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

    sign_in(page, live_app, "admin", PASSWORD)
    page.goto(f"{live_app}/review/{item.pk}/")

    assert page.locator(".model-text strong").inner_text() == "sum"
    assert page.locator(".model-text script").count() == 0
    assert page.locator("textarea[name=output]").input_value().startswith("## add(a, b)")
    assert not dialogs


def test_it_shows_a_viewer_the_queue_without_decide_buttons(live_app, page):
    run = gated_run()
    item = run.review_items.get()
    viewer = get_user_model().objects.create_user("vera", password="pw-vera-12345")
    off_this_thread(lambda: do_add_member(run.team, viewer, "viewer"))

    sign_in(page, live_app, "vera", "pw-vera-12345")
    page.goto(f"{live_app}/review/")

    row = page.locator(f"#review-{item.pk}")
    assert row.count() == 1
    assert page.locator("button[name=submit]").count() == 0
    assert page.locator("button.claim").count() == 0
    page.goto(f"{live_app}/review/{item.pk}/")
    assert page.locator("form.decide-form").count() == 0
    assert "Deciding needs the reviewer role" in page.inner_text("main")
    run.refresh_from_db()
    assert run.status == "waiting_review"

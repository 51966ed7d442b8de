"""The review queue: who sees what, claiming and assigning, the decided tab, safe context."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from mcpgateway.models import ToolApproval
from orchestrator.actions import do_add_member, do_create_team, do_decide_review
from orchestrator.models import ReviewItem, Run, RunEvent
from tests.conftest import pipeline, run_spec, scripted, start

pytestmark = pytest.mark.django_db(transaction=True)

GATED = {"steps": [
    {"kind": "agent", "id": "draft", "agent": "writer", "prompt": "draft it"},
    {"kind": "review", "id": "gate", "instructions": "ok?", "show": "{{ steps.draft.output }}"},
    {"kind": "agent", "id": "publish", "agent": "writer", "prompt": "publish"},
]}
HOSTILE = "**bold** <script>alert('x')</script><img src=x onerror=alert(1)>"


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def reviewer(team):
    user = get_user_model().objects.create_user("rita", password="pw-rita-12345")
    do_add_member(team, user, "reviewer")
    return user


@pytest.fixture
def gated(team) -> Run:
    scripted(team, "writer", {"text": HOSTILE})
    run = run_spec(team, GATED)
    assert run.status == "waiting_review"
    return run


def test_it_lists_pending_items_with_why_they_are_there(gated, owner):
    page = login(owner).get("/review/").content.decode()

    assert "Review gate" in page
    assert f'href="/runs/{gated.pk}/"' in page
    assert "ok?" in page
    assert 'id="review-count" class="badge">1<' in page


def test_it_shows_the_context_escaped_and_model_text_sanitised(gated, owner):
    item = gated.review_items.get()

    page = login(owner).get(f"/review/{item.pk}/").content.decode()

    assert "<strong>bold</strong>" in page  # markdown, through the sanitiser
    assert "<script>alert" not in page and "<img" not in page
    assert "&lt;script&gt;alert" in page  # the raw text, escaped


def test_it_shows_the_tool_and_arguments_of_a_call_waiting_for_approval(team, owner):
    scripted(team, "writer", {"text": "x"})
    run = start(pipeline(team, GATED))
    approval = ToolApproval.objects.create(team_id=team.pk, principal_kind="agent", agent_name="writer",
                                           tool_name="files__delete", arguments={"path": "<b>/etc</b>"},
                                           request_hash="h")
    item = ReviewItem.objects.create(team=team, run=run, step_key="draft", reason="approval",
                                     context={"kind": "agent", "approval_id": approval.pk, "tool": "files__delete",
                                              "prompt": "clean up"})

    page = login(owner).get(f"/review/{item.pk}/").content.decode()

    assert "files__delete" in page
    assert "&lt;b&gt;/etc&lt;/b&gt;" in page and "<b>/etc</b>" not in page
    assert 'value="approve"' in page and 'value="reject"' in page
    assert 'value="edit"' not in page and 'value="retry"' not in page


def test_it_lets_viewers_read_the_queue_without_decide_buttons(gated, teammate):
    client = login(teammate)  # a viewer
    item = gated.review_items.get()

    queue = client.get("/review/").content.decode()
    detail = client.get(f"/review/{item.pk}/").content.decode()

    assert "ok?" in queue
    assert 'name="submit"' not in queue and 'name="submit"' not in detail
    assert "review-claim" not in detail and f"/review/{item.pk}/claim/" not in queue + detail


def test_it_forbids_viewers_to_claim_or_assign(gated, teammate, owner):
    client = login(teammate)
    item = gated.review_items.get()

    assert client.post(f"/review/{item.pk}/claim/").status_code == 403
    assert client.post(f"/review/{item.pk}/assign/", {"assignee": owner.pk}).status_code == 403
    item.refresh_from_db()
    assert item.assigned_to is None


def test_it_claims_an_item_for_the_reviewer(gated, reviewer):
    item = gated.review_items.get()

    response = login(reviewer).post(f"/review/{item.pk}/claim/", {"next": "/review/"})

    assert response.status_code == 302 and response["Location"] == "/review/"
    item.refresh_from_db()
    assert item.assigned_to == reviewer
    event = RunEvent.objects.get(run=gated, type="review.claimed")
    assert event.data == {"review_id": item.pk, "assignee": "rita", "by": "rita"}


def test_it_assigns_an_item_to_a_teammate_and_lists_it_as_theirs(gated, reviewer, owner):
    item = gated.review_items.get()

    login(owner).post(f"/review/{item.pk}/assign/", {"assignee": reviewer.pk})

    item.refresh_from_db()
    assert item.assigned_to == reviewer
    mine = login(reviewer).get("/review/?mine=1").content.decode()
    assert f"/review/{item.pk}/" in mine
    assert f"/review/{item.pk}/" not in login(owner).get("/review/?mine=1").content.decode()


def test_it_refuses_to_assign_to_someone_who_cannot_decide(gated, owner, teammate):
    item = gated.review_items.get()

    response = login(owner).post(f"/review/{item.pk}/assign/", {"assignee": teammate.pk}, follow=True)

    assert "needs the reviewer role" in response.content.decode()
    item.refresh_from_db()
    assert item.assigned_to is None


def test_it_hides_other_teams_items(gated, outsider):
    do_create_team("Elsewhere", outsider)
    client = login(outsider)
    item = gated.review_items.get()

    assert "ok?" not in client.get("/review/").content.decode()
    assert client.get(f"/review/{item.pk}/").status_code == 404
    assert client.post(f"/review/{item.pk}/decide/", {"submit": "approve"}).status_code == 404
    item.refresh_from_db()
    assert item.status == "pending"


def test_it_shows_who_decided_what_and_when_in_the_decided_tab(gated, reviewer):
    item = gated.review_items.get()
    do_decide_review(item, reviewer, "reject", note="not on brand", submit=False)

    page = login(reviewer).get("/review/?tab=decided").content.decode()

    assert "reject" in page and "not on brand" in page
    assert '<span class="decided-by">rita</span>' in page
    assert timezone.now().strftime("%Y-%m-%d") in page
    assert "Nothing is waiting" in login(reviewer).get("/review/").content.decode()


def test_it_serves_the_list_partial_with_the_live_count(gated, owner):
    partial = login(owner).get("/review/list/").content.decode()

    assert 'id="review-count" hx-swap-oob="true"' in partial
    assert "<html" not in partial
    assert f"/review/{gated.review_items.get().pk}/" in partial


def test_it_reloads_the_list_when_a_team_event_arrives(gated, owner):
    page = login(owner).get("/review/").content.decode()

    assert 'hx-trigger="team-event from:document' in page
    assert 'hx-get="/review/list/' in page

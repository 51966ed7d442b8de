"""A call an API client makes over /mcp under a grant with `require_approval` waits for a
person. Only the Django admin could decide it before — an operator's console, which skipped
every check and recorded no decider — so a team's reviewers could not, by page or API, and the
call always ended "no decision in time". Now the team's reviewers decide it in the review queue
(`GET /api/v1/gateway/approvals`, `POST …/{id}/decide`, and the review page), and the admin
only shows it. Real daphne, real /mcp, the stdio echo server, API keys per role."""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx2
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from mcpgateway.actions.access import do_create_api_key, do_grant
from mcpgateway.actions.servers import do_save_server
from mcpgateway.models import AuditEntry, PrincipalKind, ToolApproval
from orchestrator.actions import do_add_member, do_create_team
from tests.conftest import serving, start_servers
from tests.mcpgateway.test_mcp_approvals_per_request import modern_call

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
ROOT = Path(settings.BASE_DIR)


@pytest.fixture
def team(gateway_runtime):
    users = {name: get_user_model().objects.create_user(name, password="pw") for name in ("owner", "alice", "rita", "vic")}
    team = do_create_team("Acme", users["owner"])
    do_add_member(team, users["alice"], "builder")
    do_add_member(team, users["rita"], "reviewer")
    do_add_member(team, users["vic"], "viewer")
    server = do_save_server(team.pk, "echo", transport="stdio", command=sys.executable,
                            args=["-m", "tests.fakes.mcp_echo_server"], cwd=str(ROOT), operator=True)
    start_servers(gateway_runtime, server)
    do_grant(server, require_approval=True)
    tokens = {name: do_create_api_key(team.pk, f"{name}-key", users[name])[1] for name in ("alice", "rita", "vic")}
    tokens["rita-read"] = do_create_api_key(team.pk, "rita-read", users["rita"], scopes=["read"])[1]
    return team, users, tokens


@pytest.fixture
def live_app():
    with serving({"GATEWAY_APPROVAL_WAIT_S": "60"}) as base:
        yield base


def _api(base: str, token: str, method: str, path: str, body: dict | None = None) -> httpx2.Response:
    return httpx2.request(method, f"{base}/api/v1/gateway{path}", json=body, timeout=30,
                          headers={"Authorization": f"Bearer {token}"})


def _audit_rows(**where) -> list[AuditEntry]:
    """Audit rows are written in batches off the request path: wait for them."""
    deadline = time.monotonic() + 15
    while not (rows := list(AuditEntry.objects.filter(**where))) and time.monotonic() < deadline:
        time.sleep(0.1)
    return rows


def _waiting_call(base: str, token: str, message: str) -> tuple[threading.Thread, list[httpx2.Response]]:
    answers: list[httpx2.Response] = []
    thread = threading.Thread(target=lambda: answers.append(
        modern_call(f"{base}/mcp/", token, "echo__echo", {"message": message}, timeout=90)))
    thread.start()
    deadline = time.monotonic() + 30
    while not ToolApproval.objects.filter(status="pending").exists():
        assert time.monotonic() < deadline, "the call never asked for approval"
        time.sleep(0.1)
    return thread, answers


def test_a_reviewer_approves_a_waiting_call_over_the_api_and_it_runs_once(team, live_app):
    _team, users, tokens = team
    thread, answers = _waiting_call(live_app, tokens["alice"], "ship release 7")
    listed = _api(live_app, tokens["rita"], "GET", "/approvals")
    assert listed.status_code == 200, listed.text
    (row,) = listed.json()
    assert row["tool"] == "echo__echo" and row["arguments"] == {"message": "ship release 7"}
    assert row["status"] == "pending" and row["expires_at"] is not None and row["principal_kind"] == PrincipalKind.API_KEY

    decided = _api(live_app, tokens["rita"], "POST", f"/approvals/{row['id']}/decide", {"action": "approve", "note": "go"})
    assert decided.status_code == 200, decided.text
    assert decided.json()["decided_by"] == users["rita"].pk
    thread.join(60)
    assert "ship release 7" in json.dumps(answers[0].json()["result"]), answers[0].text
    assert ToolApproval.objects.get().status == "used"
    assert len(_audit_rows(status="ok", tool_name="echo__echo")) == 1
    # Decided once: a second verdict is a conflict, not a second run.
    again = _api(live_app, tokens["rita"], "POST", f"/approvals/{row['id']}/decide", {"action": "reject"})
    assert again.status_code == 409, again.text
    assert _api(live_app, tokens["rita"], "GET", "/approvals").json() == []
    assert [r["id"] for r in _api(live_app, tokens["rita"], "GET", "/approvals?status=used").json()] == [row["id"]]


def test_a_rejection_reaches_the_caller_with_its_note_and_an_audit_row(team, live_app):
    _team, _users, tokens = team
    thread, answers = _waiting_call(live_app, tokens["alice"], "drop table users")
    (row,) = _api(live_app, tokens["rita"], "GET", "/approvals").json()
    decided = _api(live_app, tokens["rita"], "POST", f"/approvals/{row['id']}/decide",
                   {"action": "reject", "note": "not on a Friday"})
    assert decided.status_code == 200, decided.text
    thread.join(60)
    text = json.dumps(answers[0].json())
    assert "not on a Friday" in text and "drop table users" not in json.dumps(answers[0].json().get("result", {}).get("content"))
    (audit,) = _audit_rows(tool_name="echo__echo")
    assert audit.status == "approval_rejected" and "not on a Friday" in audit.error


def test_only_the_teams_reviewers_decide_and_a_runs_approval_goes_to_its_review_item(team, live_app):
    _team, _users, tokens = team
    thread, answers = _waiting_call(live_app, tokens["alice"], "rotate keys")
    approval = ToolApproval.objects.get(status="pending")
    path = f"/approvals/{approval.pk}/decide"
    assert _api(live_app, tokens["vic"], "POST", path, {"action": "approve"}).status_code == 403  # a viewer
    assert _api(live_app, tokens["rita-read"], "POST", path, {"action": "approve"}).status_code == 403  # a read key
    assert _api(live_app, tokens["vic"], "GET", "/approvals").status_code == 200  # viewers see the queue
    bad = _api(live_app, tokens["rita"], "POST", path, {"action": "edit", "note": "x"})
    assert bad.status_code == 422, bad.text
    assert _api(live_app, tokens["rita"], "GET", "/approvals?status=nope").status_code == 400

    other_owner = get_user_model().objects.create_user("mallory")
    other = do_create_team("Other", other_owner)
    other_token = do_create_api_key(other.pk, "m", other_owner)[1]
    assert _api(live_app, other_token, "POST", path, {"action": "approve"}).status_code == 404
    assert _api(live_app, other_token, "GET", "/approvals").json() == []

    run_approval = ToolApproval.objects.create(team_id=approval.team_id, principal_kind=PrincipalKind.AGENT, agent_name="a",
                                               run_id=12345, tool_name="echo__echo", request_hash="x" * 64)
    answer = _api(live_app, tokens["rita"], "POST", f"/approvals/{run_approval.pk}/decide", {"action": "approve"})
    assert answer.status_code == 400 and "review queue" in answer.json()["error"]["message"], answer.text
    assert ToolApproval.objects.get(pk=run_approval.pk).status == "pending"

    assert ToolApproval.objects.get(pk=approval.pk).status == "pending"  # nothing above decided it
    assert _api(live_app, tokens["rita"], "POST", path, {"action": "approve"}).status_code == 200
    thread.join(60)
    assert "rotate keys" in json.dumps(answers[0].json()["result"])


def test_a_service_account_decision_names_its_key(team, live_app):
    team_, _users, tokens = team
    key, token = do_create_api_key(team_.pk, "ci-bot", None, service_account=True)
    thread, _answers = _waiting_call(live_app, tokens["alice"], "tag build")
    (row,) = _api(live_app, token, "GET", "/approvals").json()
    decided = _api(live_app, token, "POST", f"/approvals/{row['id']}/decide", {"action": "approve"})
    assert decided.status_code == 200, decided.text
    assert decided.json()["decided_by"] is None and decided.json()["decided_by_api_key"] == key.pk
    thread.join(60)


def test_the_review_page_shows_the_waiting_call_and_decides_it(team, live_app):
    _team, users, tokens = team
    thread, answers = _waiting_call(live_app, tokens["alice"], "publish the post")
    approval = ToolApproval.objects.get(status="pending")
    viewer = Client()
    viewer.force_login(users["vic"])
    page = viewer.get("/review/").content.decode()
    assert f'id="approval-{approval.pk}"' in page and "publish the post" in page
    assert 'id="review-count" class="badge">1<' in page  # the nav counts it
    assert "review-approval-decide" not in page and f"/review/approvals/{approval.pk}/decide/" not in page  # no buttons
    assert viewer.post(f"/review/approvals/{approval.pk}/decide/", {"submit": "approve"}).status_code == 403

    reviewer = Client()
    reviewer.force_login(users["rita"])
    assert f"/review/approvals/{approval.pk}/decide/" in reviewer.get("/review/").content.decode()
    done = reviewer.post(f"/review/approvals/{approval.pk}/decide/", {"submit": "approve", "note": "fine"})
    assert done.status_code == 302
    thread.join(60)
    assert "publish the post" in json.dumps(answers[0].json()["result"])
    approval.refresh_from_db()
    assert approval.status == "used" and approval.decided_by_id == users["rita"].pk and approval.note == "fine"
    assert f'id="approval-{approval.pk}"' not in reviewer.get("/review/").content.decode()


def test_the_admin_only_shows_approvals(team):
    _team, _users, _tokens = team
    approval = ToolApproval.objects.create(team_id=_team.pk, principal_kind=PrincipalKind.API_KEY, api_key_id=1,
                                           tool_name="echo__echo", request_hash="y" * 64)
    staff = get_user_model().objects.create_superuser("op", "op@example.com", "pw")
    client = Client()
    client.force_login(staff)
    url = f"/admin/mcpgateway/toolapproval/{approval.pk}/change/"
    assert client.get(url).status_code == 200
    client.post(url, {"status": "approved", "note": "", "tool_name": "echo__echo", "team_id": _team.pk})
    assert ToolApproval.objects.get(pk=approval.pk).status == "pending", "the admin decided an approval past the queue"


def test_a_call_whose_caller_is_gone_is_not_offered_and_is_closed_when_decided(team):
    _team, users, _tokens = team
    stale = ToolApproval.objects.create(team_id=_team.pk, principal_kind=PrincipalKind.API_KEY, api_key_id=1,
                                        tool_name="echo__echo", request_hash="z" * 64)
    ToolApproval.objects.filter(pk=stale.pk).update(
        created_at=timezone.now() - timedelta(seconds=settings.GATEWAY_APPROVAL_WAIT_S + 60))
    reviewer = Client()
    reviewer.force_login(users["rita"])
    assert f'id="approval-{stale.pk}"' not in reviewer.get("/review/").content.decode()
    reviewer.post(f"/review/approvals/{stale.pk}/decide/", {"submit": "approve"})
    stale.refresh_from_db()
    assert stale.status == "rejected" and stale.note == "no decision in time"


# Found by a review of the fixes (2026-12-07); failed before its fix.
def test_the_caller_never_approves_its_own_call(team, live_app):
    """A builder's key holds `run` and a builder ranks above a reviewer: the waiting caller's own
    key approved its call, and the call ran with no person involved."""
    _team, users, tokens = team
    alice_second_key = do_create_api_key(_team.pk, "alice-2", users["alice"])[1]
    thread, answers = _waiting_call(live_app, tokens["alice"], "wire the money")
    approval = ToolApproval.objects.get(status="pending")
    path = f"/approvals/{approval.pk}/decide"
    for token in (tokens["alice"], alice_second_key):  # the key that made it, and another of hers
        refused = _api(live_app, token, "POST", path, {"action": "approve"})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "own_call", refused.text
    page = Client()
    page.force_login(users["alice"])
    row = page.get("/review/").content.decode().split(f'id="approval-{approval.pk}"')[1].split("</li>")[0]
    assert 'value="approve"' not in row and "Withdraw" in row  # her own call: she may only withdraw it
    page.post(f"/review/approvals/{approval.pk}/decide/", {"submit": "approve"})
    assert ToolApproval.objects.get(pk=approval.pk).status == "pending", "she approved her own call on the page"
    # Someone else approves it; the caller may always withdraw (reject) her own.
    assert _api(live_app, tokens["rita"], "POST", path, {"action": "approve"}).status_code == 200
    thread.join(60)
    assert "wire the money" in json.dumps(answers[0].json()["result"])
    thread, _answers = _waiting_call(live_app, tokens["alice"], "never mind")
    second = ToolApproval.objects.get(status="pending")
    assert _api(live_app, tokens["alice"], "POST", f"/approvals/{second.pk}/decide",
                {"action": "reject", "note": "withdrawn"}).status_code == 200
    thread.join(60)

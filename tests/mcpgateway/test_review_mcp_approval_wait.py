# Found by an outside review (2026-12-07, /mcp); failed before its fix.
"""A /mcp call waiting for a human approval (its grant says `require_approval`).

Real parts: the product's /mcp endpoint (real Gateway, real key authentication, deferred
audit) under uvicorn, the SDK echo server over stdio as the upstream, the database."""

from __future__ import annotations

import json
import threading
import time

import httpx2
import pytest
from django.contrib.auth import get_user_model

from mcpgateway import catalogue
from mcpgateway.actions.access import do_grant, do_revoke_api_key, do_revoke_grant
from mcpgateway.actions.approvals import do_decide_approval
from mcpgateway.audit_batch import flush_audit
from mcpgateway.errors import GatewayError
from mcpgateway.models import AuditEntry, Grant, Tool, ToolApproval
from orchestrator import api_auth
from orchestrator.models import Membership
from tests.mcpgateway.test_review_mcp_harness import (
    LEGACY,
    echo_team,
    legacy_session,
    modern_call,
    product_endpoint,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _approval_team(runtime):
    team, server, key, token, owner = echo_team(runtime)
    Grant.objects.filter(api_key=key).delete()
    do_grant(server, api_key=key, require_approval=True)
    catalogue.invalidate()
    api_auth.forget_mcp_keys()
    return team, server, key, token, owner


def _pending(key, wait_s: float = 20.0) -> ToolApproval:
    deadline = time.monotonic() + wait_s
    while True:
        found = ToolApproval.objects.filter(api_key_id=key.pk, status=ToolApproval.Status.PENDING).first()
        if found is not None:
            return found
        assert time.monotonic() < deadline, "no approval request reached the queue"
        time.sleep(0.05)


def test_a_key_revoked_while_its_call_waits_for_approval_does_not_get_the_call_made(gateway_runtime, settings):
    """The key was authenticated when the call arrived; while the call waits (up to
    GATEWAY_APPROVAL_WAIT_S, 300 s by default) the owner revokes the key — in this very process,
    where a revocation is documented to apply at once. A reviewer who then approves the queued
    request has the upstream call made, and its result handed to the revoked key's holder."""
    settings.GATEWAY_APPROVAL_WAIT_S = 60
    _, _, key, token, owner = _approval_team(gateway_runtime)
    answers: list[httpx2.Response] = []
    with product_endpoint() as endpoint:
        caller = threading.Thread(target=lambda: answers.append(
            modern_call(endpoint.url, token, "echo__echo", {"message": "after revocation"})))
        caller.start()
        approval = _pending(key)
        do_revoke_api_key(key)
        assert api_auth.known_mcp_principal(token) is None  # the revocation has applied in this process
        do_decide_approval(approval.pk, True, owner)
        caller.join(timeout=30)
    assert flush_audit(timeout=10)
    assert answers, "the call never answered"
    statuses = list(AuditEntry.objects.filter(api_key_id=key.pk).values_list("status", flat=True))
    assert "ok" not in statuses and "after revocation" not in answers[0].text, (
        f"a revoked key's call was made upstream after its revocation: audit {statuses}, answer {answers[0].text[:300]}")
    rows = list(AuditEntry.objects.filter(api_key_id=key.pk).values_list("status", "error", "arguments"))
    assert rows == [("denied", "key revoked while waiting for approval", {"message": "after revocation"})], rows
    assert "key revoked while waiting for approval" in answers[0].text, answers[0].text
    approval.refresh_from_db()
    assert approval.status == ToolApproval.Status.REJECTED and "key revoked" in approval.note  # not usable again


def test_a_grant_revoked_while_its_call_waits_for_approval_does_not_get_the_call_made(gateway_runtime, settings):
    """The same with the grant: the team's builder removes the key's grant on the server while
    a call under it waits for approval; the reviewer approves the queued request and the call
    is made, under a grant that no longer exists. (The tool is read-only, as the operator marked
    it: a side-effecting tool's `started` row happens to fail on the deleted grant's foreign key,
    and that call ends as "failed (IntegrityError)" instead.)"""
    settings.GATEWAY_APPROVAL_WAIT_S = 60
    _, server, key, token, owner = _approval_team(gateway_runtime)
    Tool.objects.filter(server=server, name="echo").update(retry_safe=True)
    catalogue.invalidate()
    answers: list[httpx2.Response] = []
    with product_endpoint() as endpoint:
        caller = threading.Thread(target=lambda: answers.append(
            modern_call(endpoint.url, token, "echo__echo", {"message": "after the grant went"})))
        caller.start()
        approval = _pending(key)
        for grant in Grant.objects.filter(api_key=key):
            do_revoke_grant(grant)
        do_decide_approval(approval.pk, True, owner)
        caller.join(timeout=30)
    assert flush_audit(timeout=10)
    assert answers, "the call never answered"
    statuses = list(AuditEntry.objects.filter(api_key_id=key.pk).values_list("status", flat=True))
    assert "ok" not in statuses, (
        f"a call was made upstream after its grant was revoked: audit {statuses}, answer {answers[0].text[:300]}")
    rows = list(AuditEntry.objects.filter(api_key_id=key.pk).values_list("status", "error", "grant_id"))
    assert rows == [("denied", "grant removed while waiting for approval", None)], rows
    assert "grant removed while waiting for approval" in answers[0].text, answers[0].text
    approval.refresh_from_db()
    assert approval.status == ToolApproval.Status.REJECTED


def test_a_member_removed_while_their_keys_call_waits_does_not_get_the_call_made(gateway_runtime, settings):
    """The key is live, but its user left the team (a key never outlives its holder's membership)."""
    settings.GATEWAY_APPROVAL_WAIT_S = 60
    team, _, key, token, owner = _approval_team(gateway_runtime)
    reviewer = get_user_model().objects.create_user("other-owner")
    Membership.objects.create(team=team, user=reviewer, role="owner")
    answers: list[httpx2.Response] = []
    with product_endpoint() as endpoint:
        caller = threading.Thread(target=lambda: answers.append(
            modern_call(endpoint.url, token, "echo__echo", {"message": "after leaving"})))
        caller.start()
        approval = _pending(key)
        Membership.objects.filter(team=team, user=owner).delete()
        do_decide_approval(approval.pk, True, reviewer)
        caller.join(timeout=30)
    assert flush_audit(timeout=10)
    rows = list(AuditEntry.objects.filter(api_key_id=key.pk).values_list("status", "error"))
    assert rows == [("denied", "the key's user left the team while waiting for approval")], rows
    assert "after leaving" not in answers[0].text


def test_an_approved_call_whose_key_and_grant_stand_is_made_once(gateway_runtime, settings):
    """The check after the wait lets a call that is still allowed through, and only once."""
    settings.GATEWAY_APPROVAL_WAIT_S = 60
    _, _, key, token, owner = _approval_team(gateway_runtime)
    answers: list[httpx2.Response] = []
    with product_endpoint() as endpoint:
        caller = threading.Thread(target=lambda: answers.append(
            modern_call(endpoint.url, token, "echo__echo", {"message": "still fine"})))
        caller.start()
        approval = _pending(key)
        do_decide_approval(approval.pk, True, owner)
        caller.join(timeout=30)
    assert flush_audit(timeout=10)
    assert '"still fine"' in answers[0].text and '"isError":false' in answers[0].text, answers[0].text
    approval.refresh_from_db()
    assert approval.status == ToolApproval.Status.USED
    assert list(AuditEntry.objects.filter(api_key_id=key.pk).values_list("status", flat=True)) == ["ok"]


def test_a_caller_that_went_away_leaves_no_approval_to_run_its_call_for_nobody(gateway_runtime, settings):
    """README: external clients wait up to GATEWAY_APPROVAL_WAIT_S, "after which, or when the
    client goes away, the approval is closed as rejected". Under uvicorn nothing cancels the
    request when its client disconnects, and the lean path never reads `receive` again: the
    approval stays pending for the whole wait, and a reviewer's later "approve" makes the
    (side-effecting) call for a client that is no longer there to get its answer."""
    settings.GATEWAY_APPROVAL_WAIT_S = 60
    _, _, key, token, owner = _approval_team(gateway_runtime)
    with product_endpoint() as endpoint:
        def impatient() -> None:
            try:
                httpx2.post(endpoint.url, timeout=httpx2.Timeout(2.0), **_call_request(token))
            except httpx2.TimeoutException:
                pass  # the client gives up and closes its connection
        caller = threading.Thread(target=impatient)
        caller.start()
        approval = _pending(key)
        caller.join(timeout=30)
        # Give the server every chance to notice the closed connection.
        time.sleep(3.0)
        approval.refresh_from_db()
        ran = False
        if approval.status == ToolApproval.Status.PENDING:
            try:
                do_decide_approval(approval.pk, True, owner)
            except GatewayError:
                pass  # closed meanwhile: what should happen
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not ran:
                flush_audit(timeout=5)
                ran = AuditEntry.objects.filter(api_key_id=key.pk, status="ok").exists()
                time.sleep(0.2)
    approval.refresh_from_db()
    assert approval.status == ToolApproval.Status.REJECTED and approval.note == "the caller stopped waiting", approval.status
    assert not ran, ("the client had gone away, yet its approval stayed pending and approving it made the upstream "
                     f"call (approval now {approval.status!r})")


def test_a_legacy_session_caller_that_went_away_leaves_no_approval_either(gateway_runtime, settings):
    """The same in the 2025-11-25 era, which the SDK's transport serves (JSON responses): the call
    runs in its session's task, and the transport never reads `receive` after the body."""
    settings.GATEWAY_APPROVAL_WAIT_S = 60
    _, _, key, token, _ = _approval_team(gateway_runtime)
    with product_endpoint() as endpoint:
        sid = legacy_session(endpoint.url, token)
        body = {"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                "params": {"name": "echo__echo", "arguments": {"message": "nobody waits"}}}

        def impatient() -> None:
            try:
                httpx2.post(endpoint.url, timeout=httpx2.Timeout(2.0), content=json.dumps(body).encode(), headers={
                    "Authorization": f"Bearer {token}", "Content-Type": "application/json",
                    "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": LEGACY,
                    "Mcp-Session-Id": sid})
            except httpx2.TimeoutException:
                pass
        caller = threading.Thread(target=impatient)
        caller.start()
        approval = _pending(key)
        caller.join(timeout=30)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            approval.refresh_from_db()
            if approval.status != ToolApproval.Status.PENDING:
                break
            time.sleep(0.1)
    assert flush_audit(timeout=10)
    assert approval.status == ToolApproval.Status.REJECTED and approval.note == "the caller stopped waiting", approval.status
    assert not AuditEntry.objects.filter(api_key_id=key.pk, status="ok").exists()


def _call_request(token: str) -> dict:
    from tests.mcpgateway.test_review_mcp_harness import ENVELOPE
    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "echo__echo", "arguments": {"message": "nobody waits"}, "_meta": dict(ENVELOPE)}}
    return {"content": json.dumps(body).encode(), "headers": {
        "Authorization": f"Bearer {token}", "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/call", "Mcp-Name": "echo__echo"}}

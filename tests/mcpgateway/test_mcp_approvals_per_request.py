"""An approval belongs to one /mcp request and its caller (found by a review): it was looked up
by tool, arguments and JSON-RPC id — ids every client session starts again at 0 or 1 — so one
decision about Alice's call ran Bob's identical call too, one approval ran a retried call
twice, and one rejection refused every later identical call in the team without a review.
Real daphne, real /mcp, stdio echo server, two API keys."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import httpx2
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model

from mcpgateway.actions.access import do_create_api_key, do_grant
from mcpgateway.actions.approvals import do_decide_approval
from mcpgateway.actions.servers import do_save_server
from mcpgateway.models import AuditEntry, ToolApproval
from orchestrator.actions import do_add_member, do_create_team
from tests.conftest import start_servers

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
ROOT = Path(settings.BASE_DIR)
MODERN = "2026-07-28"


def modern_call(url: str, token: str, name: str, arguments: dict, request_id=1, timeout=60) -> httpx2.Response:
    body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
            "params": {"name": name, "arguments": arguments,
                       "_meta": {"io.modelcontextprotocol/protocolVersion": MODERN,
                                 "io.modelcontextprotocol/clientCapabilities": {}}}}
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
               "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": MODERN,
               "Mcp-Method": "tools/call", "Mcp-Name": name}
    return httpx2.post(url, content=json.dumps(body).encode(), headers=headers, timeout=timeout)


@pytest.fixture
def approval_team(gateway_runtime):
    owner = get_user_model().objects.create_user("owner")
    alice, bob = get_user_model().objects.create_user("alice"), get_user_model().objects.create_user("bob")
    team = do_create_team("Acme", owner)
    do_add_member(team, alice, "builder")
    do_add_member(team, bob, "builder")
    server = do_save_server(team.pk, "echo", transport="stdio", command=sys.executable,
                            args=["-m", "tests.fakes.mcp_echo_server"], cwd=str(ROOT), operator=True)
    start_servers(gateway_runtime, server)
    do_grant(server, require_approval=True)  # every call of the team waits for a human
    key_a, token_a = do_create_api_key(team.pk, "alice-key", alice)
    key_b, token_b = do_create_api_key(team.pk, "bob-key", bob)
    return team, key_a, token_a, key_b, token_b


def _wait_for_pending(count: int, timeout: float = 30) -> list[ToolApproval]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = list(ToolApproval.objects.filter(status="pending"))
        if len(rows) >= count:
            return rows
        time.sleep(0.1)
    return list(ToolApproval.objects.filter(status="pending"))


@pytest.fixture
def live_app():
    from tests.conftest import serving

    with serving({"GATEWAY_APPROVAL_WAIT_S": "6"}) as base:  # a call nobody decides gives up soon
        yield base


def test_one_approval_of_alices_call_lets_bobs_identical_call_run_too(approval_team, live_app):
    _team, key_a, token_a, key_b, token_b = approval_team
    url = f"{live_app}/mcp/"
    answers: dict[str, httpx2.Response] = {}

    def call(who: str, token: str) -> None:
        answers[who] = modern_call(url, token, "echo__echo", {"message": "wire 100 EUR to X"}, request_id=1)

    a = threading.Thread(target=call, args=("alice", token_a))
    a.start()
    pending = _wait_for_pending(1)
    assert len(pending) == 1 and pending[0].api_key_id == key_a.pk  # the reviewer sees Alice's request
    b = threading.Thread(target=call, args=("bob", token_b))
    b.start()
    time.sleep(2)  # Bob's identical call is now waiting too
    do_decide_approval(pending[0].pk, True, None, note="ok for alice")
    a.join(60)
    b.join(60)
    time.sleep(1)
    ok = list(AuditEntry.objects.filter(status="ok").values_list("api_key_id", "tool_name"))
    # Bob's call needs its own approval (it is Bob's, not Alice's, request): nobody gave it, and
    # once his call stopped waiting it was closed (`test_approval_timeout.py`).
    assert sorted(ToolApproval.objects.values_list("api_key_id", "status")) == sorted(
        [(key_a.pk, "used"), (key_b.pk, "rejected")])
    assert [k for k, _ in ok] == [key_a.pk], "Bob's call ran on the approval of Alice's call"
    assert "wire 100 EUR" in json.dumps(answers["alice"].json()["result"])
    assert "wire 100 EUR" not in json.dumps(answers["bob"].json()["result"])


def test_one_approval_runs_two_identical_calls_of_the_same_key(approval_team, live_app):
    """A client that retries a call still waiting for approval (same id, same arguments) gets
    both copies run on one human approval."""
    _team, _key_a, token_a, _key_b, _token_b = approval_team
    url = f"{live_app}/mcp/"
    answers: list[httpx2.Response] = []

    def call() -> None:
        answers.append(modern_call(url, token_a, "echo__echo", {"message": "delete prod"}, request_id=1))

    first = threading.Thread(target=call)
    first.start()
    pending = _wait_for_pending(1)
    retry = threading.Thread(target=call)
    retry.start()
    time.sleep(2)
    do_decide_approval(pending[0].pk, True, None)
    first.join(60)
    retry.join(60)
    time.sleep(1)
    ok = AuditEntry.objects.filter(status="ok").count()
    assert ok == 1 == ToolApproval.objects.filter(status="used").count(), "one human approval ran the call twice"
    # The retry asked on its own; nobody answered it, so it was closed when it stopped waiting.
    assert list(ToolApproval.objects.exclude(status="used").values_list("status", flat=True)) == ["rejected"]


def test_a_rejection_is_sticky_for_every_later_identical_call(approval_team, live_app):
    """A rejected call is rejected again, with no new review, for any later call with the same id
    and arguments (JSON-RPC clients restart ids at 0/1 each session), by any key of the team."""
    _team, _key_a, token_a, _key_b, token_b = approval_team
    url = f"{live_app}/mcp/"
    answers: list[httpx2.Response] = []
    t = threading.Thread(target=lambda: answers.append(modern_call(url, token_a, "echo__echo", {"message": "x"})))
    t.start()
    pending = _wait_for_pending(1)
    do_decide_approval(pending[0].pk, False, None, note="not now")
    t.join(60)
    started = time.monotonic()
    later = modern_call(url, token_b, "echo__echo", {"message": "x"}, timeout=30)  # Bob, days later
    assert ToolApproval.objects.count() == 2, "Bob's call was rejected on Alice's old decision without a review"
    assert time.monotonic() - started > 5 and "no decision in time" in later.text, later.text

"""Audit rows and stored approvals of every server hold no secret, whoever's it is and
however the call ended (allowed, denied, rate-limited, waiting for approval)."""

from __future__ import annotations

import json
import sys

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings

from mcpgateway.actions.access import do_grant
from mcpgateway.actions.servers import do_save_server
from mcpgateway.dispatch import Gateway
from mcpgateway.models import AuditEntry, ToolApproval
from mcpgateway.redaction import marker
from mcpgateway.types import ApprovalRequired, Principal, ToolDenied, ToolInvocation
from tests.conftest import start_servers
from tests.mcpgateway.conftest import agent

ROOT = str(settings.BASE_DIR)
VAULT = 'vault"Key\\Zeta-771'  # held by the vault server; the calls below go to the echo server


def call(principal: Principal, name: str, arguments: dict, **where):
    invocation = ToolInvocation(principal, name, arguments, call_id=where.pop("call_id", "c1"), **where)
    return async_to_sync(Gateway(principal.team_id).call_tool)(invocation)


@pytest.fixture
def servers(gateway_runtime):
    vault = do_save_server(1, "vault", transport="stdio", command=sys.executable, args=["-m", "tests.fakes.mcp_env_server"],
                           cwd=ROOT, env={"VAULT_TOKEN": VAULT}, operator=True)
    echo = do_save_server(1, "echo", transport="stdio", command=sys.executable, args=["-m", "tests.fakes.mcp_echo_server"],
                          cwd=ROOT, operator=True)
    do_grant(echo, agent="a", tool=None, calls_per_minute=2)
    do_grant(echo, agent="careful", require_approval=True)
    start_servers(gateway_runtime, vault, echo)
    return vault, echo


def stored(row) -> str:
    return json.dumps([row.arguments, row.result, row.error])


def test_it_redacts_another_servers_secret_from_an_allowed_call_and_its_result(servers):
    result = call(agent("a"), "echo__echo", {"message": f"leak {VAULT}"})

    row = AuditEntry.objects.get(status="ok")
    assert VAULT not in result.content and marker(VAULT) in result.content
    assert VAULT not in stored(row) and json.dumps(VAULT)[1:-1] not in stored(row)
    assert row.arguments == {"message": f"leak {marker(VAULT)}"}


def test_it_redacts_the_arguments_of_denied_and_rate_limited_calls(servers):
    with pytest.raises(ToolDenied):
        call(agent("a"), "vault__getenv", {"name": VAULT})
    for i in range(3):
        call(agent("a"), "echo__echo", {"message": VAULT}, call_id=f"c{i}")

    rows = AuditEntry.objects.filter(status__in=["denied", "rate_limited"])
    assert {r.status for r in rows} == {"denied", "rate_limited"}
    assert all(VAULT not in stored(r) and marker(VAULT) in stored(r) for r in rows)


def test_it_stores_the_arguments_of_a_call_waiting_for_approval_redacted(servers):
    with pytest.raises(ApprovalRequired) as info:
        call(agent("careful"), "echo__echo", {"message": VAULT}, run_id=99, step_key="s")

    approval = ToolApproval.objects.get(pk=info.value.approval_id)
    assert approval.arguments == {"message": marker(VAULT)}

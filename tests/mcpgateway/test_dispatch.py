"""The dispatch path against real upstream servers: the SDK echo server in tests/fakes and
the npm reference servers, through grants, rate limits, approvals, redaction and audit."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings

from mcpgateway.actions.access import do_grant
from mcpgateway.actions.servers import do_save_server
from mcpgateway.dispatch import Gateway
from mcpgateway.models import AuditEntry, Tool, ToolApproval, ToolStatus
from mcpgateway.sanitize import redaction_marker
from mcpgateway.types import ApprovalRequired, Principal, ToolDenied, ToolInvocation
from tests.conftest import start_servers
from tests.mcpgateway.conftest import agent

ROOT = str(settings.BASE_DIR)


def echo_server(team_id: int = 1, name: str = "echo"):
    return do_save_server(team_id, name, transport="stdio", command=sys.executable, args=["-m", "tests.fakes.mcp_echo_server"], cwd=ROOT, operator=True)


def call(principal: Principal, name: str, arguments: dict, **where):
    invocation = ToolInvocation(principal, name, arguments, call_id=where.pop("call_id", "c1"), **where)
    return async_to_sync(Gateway(principal.team_id).call_tool)(invocation)


def test_it_discovers_and_calls_the_sdk_echo_server(gateway_runtime):
    server = echo_server()
    do_grant(server, agent="a")
    start_servers(gateway_runtime, server)

    names = [t.name for t in async_to_sync(Gateway(1).list_tools)(agent("a"))]
    result = call(agent("a"), "echo__echo", {"message": "hello"})
    failed = call(agent("a"), "echo__fail", {"message": "boom"})

    assert {"echo__echo", "echo__add", "echo__fail", "echo__mutate"} <= set(names)
    assert "hello" in result.content and not result.is_error
    assert failed.is_error and "boom" in failed.content
    rows = list(AuditEntry.objects.order_by("id"))
    assert [(r.tool_name, r.status) for r in rows] == [("echo__echo", "ok"), ("echo__fail", "error")]
    assert rows[0].server_name == "echo" and rows[0].arguments == {"message": "hello"}
    assert rows[0].grant_id is not None and rows[0].latency_ms > 0


def test_it_serves_the_npm_reference_servers(gateway_runtime, tmp_path: Path):
    (tmp_path / "notes.txt").write_text("written by the test")
    everything = do_save_server(1, "everything", transport="stdio", command="npx",
                                args=["-y", "@modelcontextprotocol/server-everything"], cwd=ROOT, operator=True)
    files = do_save_server(1, "files", transport="stdio", command="npx",
                           args=["-y", "@modelcontextprotocol/server-filesystem", str(tmp_path)], cwd=ROOT, operator=True)
    do_grant(everything, agent="a")
    do_grant(files, agent="a")
    start_servers(gateway_runtime, everything, files)

    echoed = call(agent("a"), "everything__echo", {"message": "via gateway"})
    read = call(agent("a"), "files__read_text_file", {"path": str(tmp_path / "notes.txt")})

    assert "via gateway" in echoed.content
    assert "written by the test" in read.content
    assert AuditEntry.objects.filter(status="ok").count() == 2


def test_it_admits_exactly_the_rate_limit_of_a_concurrent_burst(gateway_runtime):
    server = echo_server()
    do_grant(server, agent="a", calls_per_minute=5)
    start_servers(gateway_runtime, server)
    gateway = Gateway(1)

    async def burst():
        return await asyncio.gather(*(gateway.call_tool(ToolInvocation(agent("a"), "echo__echo", {"message": str(i)}, call_id=str(i)))
                                      for i in range(25)))

    results = async_to_sync(burst)()

    assert sum(not r.is_error for r in results) == 5
    limited = [r for r in results if r.is_error]
    assert len(limited) == 20 and all("5 calls per minute" in r.content for r in limited)
    assert AuditEntry.objects.filter(status="rate_limited").count() == 20
    assert AuditEntry.objects.filter(status="ok").count() == 5


def test_it_redacts_server_secrets_from_results_and_audit(gateway_runtime):
    server = do_save_server(1, "env", transport="stdio", command=sys.executable, args=["-m", "tests.fakes.mcp_env_server"],
                            cwd=ROOT, env={"API_TOKEN": "tok-very-secret-42"}, operator=True)
    do_grant(server, agent="a")
    start_servers(gateway_runtime, server)

    result = call(agent("a"), "env__getenv", {"name": "API_TOKEN"})
    echo_back = call(agent("a"), "env__getenv", {"name": "tok-very-secret-42"})

    assert "tok-very-secret-42" not in result.content and redaction_marker("tok-very-secret-42") in result.content
    assert "tok-very-secret-42" not in str(result.data)
    assert echo_back.content == ""
    for row in AuditEntry.objects.all():
        assert "tok-very-secret-42" not in str(row.result) + str(row.arguments)


def test_it_caps_huge_results(gateway_runtime, settings):
    settings.GATEWAY_RESULT_MAX_CHARS = 1000
    server = do_save_server(1, "env", transport="stdio", command=sys.executable, args=["-m", "tests.fakes.mcp_env_server"], cwd=ROOT, operator=True)
    do_grant(server, agent="a")
    start_servers(gateway_runtime, server)

    result = call(agent("a"), "env__big", {"size": 50_000})

    assert len(result.content) < 1100 and "truncated" in result.content
    assert sum(len(b.get("text", "")) for b in result.data["mcp_content"]) < 1100


def test_it_holds_a_tool_whose_description_changes(gateway_runtime):
    server = echo_server()
    do_grant(server, agent="a")
    start_servers(gateway_runtime, server)

    call(agent("a"), "echo__mutate", {})
    deadline = time.monotonic() + 20
    while Tool.objects.get(server=server, name="echo").status != ToolStatus.HELD:
        assert time.monotonic() < deadline, "the changed tool was not held"
        time.sleep(0.05)

    from mcpgateway import catalogue
    from mcpgateway.actions.catalogue import held_change

    catalogue.invalidate()
    assert "echo__echo" not in [t.name for t in async_to_sync(Gateway(1).list_tools)(agent("a"))]
    with pytest.raises(ToolDenied, match="held for re-approval"):
        call(agent("a"), "echo__echo", {"message": "x"})
    change = held_change(Tool.objects.get(server=server, name="echo"))
    assert set(change) == {"description"}
    assert change["description"]["approved"] != change["description"]["current"]


def test_it_waits_for_approval_or_pauses_a_run(gateway_runtime, settings):
    from mcpgateway.actions.approvals import do_decide_approval

    settings.GATEWAY_APPROVAL_WAIT_S = 10
    server = echo_server()
    do_grant(server, agent="a", require_approval=True)
    start_servers(gateway_runtime, server)

    with pytest.raises(ApprovalRequired) as info:
        call(agent("a"), "echo__echo", {"message": "in a run"}, run_id=99, step_key="s")
    assert ToolApproval.objects.get(pk=info.value.approval_id).status == "pending"
    do_decide_approval(info.value.approval_id, True, None)
    result = call(agent("a"), "echo__echo", {"message": "in a run"}, run_id=99, step_key="s")
    assert "in a run" in result.content
    assert ToolApproval.objects.get(pk=info.value.approval_id).status == "used"

    # an external client (no run) waits for the decision
    import threading

    def reject_soon():
        deadline = time.monotonic() + 10
        while not ToolApproval.objects.filter(run_id=None, status="pending").exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        do_decide_approval(ToolApproval.objects.get(run_id=None).pk, False, None, note="not today")

    thread = threading.Thread(target=reject_soon)
    thread.start()
    refused = call(agent("a"), "echo__echo", {"message": "external"})
    thread.join()
    assert refused.is_error and "not today" in refused.content
    assert AuditEntry.objects.filter(status="approval_rejected").count() == 1


def test_it_reports_a_dead_server_as_unavailable(gateway_runtime):
    server = do_save_server(1, "ghost", transport="stdio", command="/nonexistent/binary", operator=True)
    from mcpgateway.models import Tool as ToolModel
    from tests.mcpgateway.conftest import catalogue_tool

    catalogue_tool(server, "boo")
    do_grant(server, agent="a")
    from mcpgateway.background import submit

    submit(gateway_runtime.sync()).result(timeout=30)
    result = call(agent("a"), "ghost__boo", {})
    assert result.is_error and "unavailable" in result.content
    assert AuditEntry.objects.get().status == "unavailable"
    assert ToolModel.objects.count() == 1

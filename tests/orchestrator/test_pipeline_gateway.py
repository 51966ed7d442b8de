"""Pipeline agents get their tools from the gateway and call them through its dispatch path."""

from __future__ import annotations

import sys

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings

from mcpgateway.actions.access import do_grant
from mcpgateway.actions.servers import do_save_server
from mcpgateway.models import AuditEntry, ToolApproval
from orchestrator.actions import do_decide_review
from orchestrator.execution import execute_run
from orchestrator.models import RunEvent, StepRun
from tests.conftest import pipeline, scripted, start, start_servers

ROOT = str(settings.BASE_DIR)
SPEC = {"steps": [{"kind": "agent", "id": "work", "agent": "worker", "prompt": "do it"}]}


def run_through_gateway(run):
    async_to_sync(execute_run)(run.pk)  # the default toolbox: the gateway
    run.refresh_from_db()
    return run


@pytest.fixture
def echo(team, gateway_runtime):
    server = do_save_server(team.pk, "echo", transport="stdio", command=sys.executable,
                            args=["-m", "tests.fakes.mcp_echo_server"], cwd=ROOT, operator=True)
    do_grant(server, agent="worker", tool=None)
    start_servers(gateway_runtime, server)
    return server


def test_it_calls_granted_tools_and_is_refused_ungranted_ones(team, gateway_runtime):
    server = do_save_server(team.pk, "echo", transport="stdio", command=sys.executable,
                            args=["-m", "tests.fakes.mcp_echo_server"], cwd=ROOT, operator=True)
    start_servers(gateway_runtime, server)
    do_grant(server, agent="worker", tool=server.tools.get(name="echo"))
    scripted(team, "worker",
             {"tool_calls": [{"name": "echo__echo", "arguments": {"message": "allowed"}},
                             {"name": "echo__add", "arguments": {"a": 1, "b": 2}}]},
             {"text": "done: {{last}}"})

    run = run_through_gateway(start(pipeline(team, SPEC)))

    assert run.status == "succeeded", run.error
    assert "not granted" in run.output["result"]
    rows = {r.tool_name: r for r in AuditEntry.objects.filter(run_id=run.pk)}
    assert rows["echo__echo"].status == "ok" and rows["echo__echo"].agent_name == "worker"
    assert rows["echo__echo"].step_key == "work" and rows["echo__echo"].call_id == "call_0_0"
    assert rows["echo__add"].status == "denied"
    finished = {e.data["name"]: e.data for e in RunEvent.objects.filter(run=run, type="tool.finished")}
    assert not finished["echo__echo"]["is_error"] and finished["echo__add"]["is_error"]


def test_it_counts_tool_errors_the_model_recovers_from(team, echo):
    scripted(team, "worker",
             {"tool_calls": [{"name": "echo__fail", "arguments": {"message": "first try broke"}}]},
             {"tool_calls": [{"name": "echo__add", "arguments": {"a": 2, "b": 2}}]},
             {"text": "recovered"})

    run = run_through_gateway(start(pipeline(team, SPEC)))

    step = StepRun.objects.get(run=run, key="work")
    assert (step.tool_calls, step.tool_errors, step.tool_recoveries) == (2, 1, 1)


def test_it_pauses_a_run_for_a_tool_call_that_needs_approval(team, gateway_runtime, owner):
    server = do_save_server(team.pk, "echo", transport="stdio", command=sys.executable,
                            args=["-m", "tests.fakes.mcp_echo_server"], cwd=ROOT, operator=True)
    do_grant(server, agent="worker", require_approval=True)
    start_servers(gateway_runtime, server)
    scripted(team, "worker", {"tool_calls": [{"name": "echo__echo", "arguments": {"message": "wire $1M"}}]},
             {"text": "result: {{last}}"})

    run = run_through_gateway(start(pipeline(team, SPEC)))

    assert run.status == "waiting_review"
    item = run.review_items.get()
    assert item.reason == "approval" and item.context["tool"] == "echo__echo"
    approval = ToolApproval.objects.get(pk=item.context["approval_id"])
    assert approval.arguments == {"message": "wire $1M"} and approval.run_id == run.pk

    do_decide_review(item, owner, "approve", submit=False)
    run = run_through_gateway(run)

    assert run.status == "succeeded", run.error
    assert "wire $1M" in run.output["result"]
    assert ToolApproval.objects.get(pk=approval.pk).status == "used"
    # the model call that asked for the tool was not made again
    assert run.usage.filter(step_key="work").count() == 2


def test_it_hands_a_rejected_approval_to_the_model_as_an_error(team, gateway_runtime, owner):
    server = do_save_server(team.pk, "echo", transport="stdio", command=sys.executable,
                            args=["-m", "tests.fakes.mcp_echo_server"], cwd=ROOT, operator=True)
    do_grant(server, agent="worker", require_approval=True)
    start_servers(gateway_runtime, server)
    scripted(team, "worker", {"tool_calls": [{"name": "echo__echo", "arguments": {"message": "rm -rf"}}]},
             {"text": "result: {{last}}"})
    run = run_through_gateway(start(pipeline(team, SPEC)))

    do_decide_review(run.review_items.get(), owner, "reject", note="too dangerous", submit=False)
    run = run_through_gateway(run)

    assert run.status == "succeeded"
    assert "not approved: too dangerous" in run.output["result"]
    assert AuditEntry.objects.filter(run_id=run.pk, status="approval_rejected").count() == 1

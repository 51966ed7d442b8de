"""An unexpected exception inside one parallel branch fails that branch only: the parallel's
`on_branch_failure` decides, the siblings finish, and no step is left `running`. A run that
crashes outside the engine's handling ends with its steps closed, its lease released and its
`run.failed` webhook queued."""

from __future__ import annotations

import pytest

from mcpgateway.inprocess import InProcessToolbox
from mcpgateway.types import ToolInvocation, ToolResult
from orchestrator.actions.runs import do_fail_run
from orchestrator.models import Run, StepRun, Webhook, WebhookDelivery
from orchestrator.webhooks import do_create_webhook
from tests.conftest import execute, pipeline, run_spec, scripted, start

pytestmark = pytest.mark.django_db(transaction=True)


class FaultyToolbox(InProcessToolbox):
    """The engine's tool port with an injected fault: `t__boom` raises instead of answering."""

    async def call_tool(self, invocation: ToolInvocation) -> ToolResult:
        if invocation.name == "t__boom":
            raise RuntimeError("injected fault")
        return await super().call_tool(invocation)


def _toolbox() -> FaultyToolbox:
    box = FaultyToolbox(grants={"*": ["*"]})
    box.register("t__boom", lambda: "never", "Explodes", {"type": "object", "properties": {}})
    return box


def _spec(policy: str) -> dict:
    return {"steps": [{
        "kind": "parallel", "id": "fan", "on_branch_failure": policy,
        "branches": [
            {"kind": "agent", "id": "ok", "agent": "calm", "prompt": "fine"},
            {"kind": "sequence", "id": "seq", "steps": [
                {"kind": "agent", "id": "bad", "agent": "boomer", "prompt": "explode"}]},
        ],
        "join": {"kind": "agent", "id": "join", "agent": "joiner", "prompt": "ok={{ steps.ok.output }} bad={{ steps.bad.error }}"},
    }]}


def _agents(team) -> None:
    scripted(team, "calm", {"text": "calm output", "delay_ms": 100})
    scripted(team, "boomer", {"tool_calls": [{"name": "t__boom", "arguments": {}}]}, {"text": "unreached"})
    scripted(team, "joiner", {"text": "{{prompt}}"})


def test_it_fails_only_the_branch_that_raised(team):
    _agents(team)
    run = run_spec(team, _spec("continue"), toolbox=_toolbox())

    assert run.status == "succeeded", run.error
    statuses = dict(StepRun.objects.filter(run=run).values_list("key", "status"))
    assert statuses == {"fan": "succeeded", "ok": "succeeded", "seq": "failed", "bad": "failed", "join": "succeeded"}
    assert "internal error: RuntimeError: injected fault" in StepRun.objects.get(run=run, key="bad").error
    assert run.output["result"] == "ok=calm output bad=internal error: RuntimeError: injected fault"


def test_it_fails_the_run_cleanly_when_the_policy_says_fail(team):
    _agents(team)
    run = run_spec(team, _spec("fail"), toolbox=_toolbox())

    assert run.status == "failed"
    assert not StepRun.objects.filter(run=run, status="running").exists()
    assert StepRun.objects.get(run=run, key="ok").status == "succeeded"
    run.refresh_from_db()
    assert run.lease_owner == "" or run.lease_until is None


def test_it_closes_steps_and_queues_the_webhook_when_a_run_crashes(team):
    scripted(team, "calm", {"text": "calm output"})
    pipe = pipeline(team, {"steps": [{"kind": "agent", "id": "a", "agent": "calm", "prompt": "x"}]})
    hook, _ = do_create_webhook(pipe, "https://hooks.example.test/agentdeck", ["run.failed"])
    run = start(pipe)
    StepRun.objects.create(run=run, key="a", step_id="a", kind="agent", status="running")
    Run.objects.filter(pk=run.pk).update(status="running", lease_owner="w:1")

    do_fail_run(run.pk, "internal error: OperationalError: boom")

    run.refresh_from_db()
    assert run.status == "failed" and run.lease_owner == "" and run.lease_until is None
    assert StepRun.objects.get(run=run, key="a").status == "failed"
    assert WebhookDelivery.objects.filter(webhook=hook, event="run.failed").count() == 1
    assert Webhook.objects.count() == 1
    execute(run)  # a finished run is not claimed again
    assert Run.objects.get(pk=run.pk).status == "failed"

"""The demo's write-and-test pipeline: the coder writes, the tester runs the code in the
real sandbox (through the gateway, in Docker), the failure goes back to the coder."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync

from mcpgateway.models import AuditEntry, ToolServer
from orchestrator.demo import FIXED, seed_demo
from orchestrator.execution import execute_run
from orchestrator.models import Pipeline, RunEvent, StepRun
from tests.conftest import start, start_servers

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.docker]


def test_the_tester_runs_the_code_in_the_sandbox_and_failures_flow_back(gateway_runtime, docker_client):
    team, _, _ = seed_demo(password="demo-pass-123")
    start_servers(gateway_runtime, ToolServer.objects.get(team_id=team.pk, name="sandbox"))

    run = start(Pipeline.objects.get(team=team, slug="code-test"), {"task": "add two numbers"})
    async_to_sync(execute_run)(run.pk)
    run.refresh_from_db()

    assert run.status == "succeeded", run.error
    assert run.output["code"] == FIXED and run.output["test_report"].startswith("tests passed")
    keys = list(StepRun.objects.filter(run=run, kind="agent").order_by("id").values_list("key", flat=True))
    assert keys == ["coder#1", "tester#1", "coder#2", "tester#2"]
    calls = [json.loads(e.data["content"]) for e in
             RunEvent.objects.filter(run=run, type="tool.finished", data__name="sandbox__run_python").order_by("seq")]
    # Round 1 really failed in the container, round 2 really passed.
    assert calls[0]["exit_code"] == 1 and "AssertionError: add(2, 3) returned -1, expected 5" in calls[0]["stderr"]
    assert calls[1]["exit_code"] == 0 and calls[1]["stdout"] == "add(2, 3) == 5: ok\n"
    coder_2 = StepRun.objects.get(run=run, key="coder#2")
    assert "add(2, 3) returned -1" in json.dumps(coder_2.input)  # the failure reached the coder
    assert list(AuditEntry.objects.filter(run_id=run.pk).values_list("agent_name", "status")) == [("tester", "ok")] * 2

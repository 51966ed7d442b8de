"""A run whose side-effecting tool call a crash interrupted pauses with "this call may have
run"; the reviewer retries it (same idempotency key), skips it or supplies its result.

The crash is reproduced as the database holds it afterwards: the model turn that asked for
the call is in the ledger, the call's audit row is `started`, the step is `running`. The
run then resumes in this process through the real gateway and a real stdio MCP server that
records every call (the killed-worker version is in test_interrupted_calls.py).
"""

from __future__ import annotations

import sys

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.utils import timezone

from mcpgateway.actions.access import do_grant
from mcpgateway.actions.servers import do_save_server
from mcpgateway.models import AuditEntry, CallStatus
from orchestrator.actions import do_decide_review
from orchestrator.actions.errors import ActionError
from orchestrator.engine.types import ModelResponse, ToolCall, Usage
from orchestrator.execution import execute_run
from orchestrator.models import LedgerEntry, ReviewItem, Run, StepRun
from tests.conftest import pipeline, scripted, start, start_servers
from tests.dashboard.test_review_decisions import wait_for
from tests.fakes.mcp_recording_server import read_calls

ROOT = str(settings.BASE_DIR)
SPEC = {"steps": [{"kind": "agent", "id": "work", "agent": "w", "prompt": "go"}]}


@pytest.fixture
def log(tmp_path):
    return str(tmp_path / "upstream.jsonl")


@pytest.fixture
def recorder(team, gateway_runtime, log):
    server = do_save_server(team.pk, "rec", transport="stdio", command=sys.executable,
                            args=["-m", "tests.fakes.mcp_recording_server", log], cwd=ROOT, operator=True)
    do_grant(server, agent="w")
    start_servers(gateway_runtime, server)
    return server


def _crashed(team, tool: str = "rec__send") -> Run:
    """A run as a worker killed during its first tool call leaves it."""
    arguments = {"query": "m"} if tool == "rec__lookup" else {"message": "m"}
    scripted(team, "w", {"tool_calls": [{"name": tool, "arguments": arguments}]}, {"text": "done: {{last}}"})
    run = start(pipeline(team, SPEC))
    response = ModelResponse(text="", tool_calls=[ToolCall("call_0_0", tool, arguments)], usage=Usage(5, 5),
                             stop_reason="tool_use", model="scripted-1")
    LedgerEntry.objects.create(run=run, step_key="work", attempt=1, index=0, kind="model", name="scripted-1",
                               request={"turn": 1, "messages": 0}, result={"response": response.to_dict()})
    StepRun.objects.create(run=run, key="work", step_id="work", kind="agent", status="running", attempt=1, agent_name="w",
                           started_at=timezone.now())
    AuditEntry.objects.create(team_id=team.pk, principal_kind="agent", agent_name="w", run_id=run.pk, step_key="work",
                              call_id="call_0_0", tool_name=tool, arguments=arguments, status=CallStatus.STARTED,
                              idempotency_key=f"run-{run.pk}/work/1/1", dispatch_id="dead", created_at=timezone.now())
    return _resume(run)


def _resume(run: Run) -> Run:
    async_to_sync(execute_run)(run.pk)
    run.refresh_from_db()
    return run


def _decide(run: Run, owner, action: str, **kwargs) -> Run:
    do_decide_review(ReviewItem.objects.get(run=run, status="pending"), owner, action, submit=False, **kwargs)
    return _resume(run)


def test_it_pauses_instead_of_calling_a_side_effecting_tool_again(team, recorder, log):
    run = _crashed(team)

    assert run.status == "waiting_review"
    item = ReviewItem.objects.get(run=run)
    assert item.context["error"] == "rec__send: this call may have run"
    assert item.context["interrupted_call"]["idempotency_key"] == f"run-{run.pk}/work/1/1"
    assert read_calls(log) == []
    assert AuditEntry.objects.get(run_id=run.pk).status == "interrupted"


def test_it_calls_again_with_the_same_key_when_the_reviewer_retries(team, owner, recorder, log):
    run = _decide(_crashed(team), owner, "retry")

    assert run.status == "succeeded", run.error
    assert run.output["result"] == "done: sent m"
    assert [c["meta"]["agentdeck.dev/idempotency-key"] for c in read_calls(log)] == [f"run-{run.pk}/work/1/1"]
    assert list(AuditEntry.objects.filter(run_id=run.pk).order_by("id").values_list("status", flat=True)) == ["interrupted", "ok"]


def test_it_records_a_skipped_call_as_failed_without_calling_it(team, owner, recorder, log):
    run = _decide(_crashed(team), owner, "skip", note="checked: it did not send")

    assert run.status == "succeeded", run.error
    assert run.output["result"].startswith("done: Tool call skipped by a reviewer")
    assert "checked: it did not send" in run.output["result"]
    assert read_calls(log) == []
    ledger = LedgerEntry.objects.get(run=run, kind="tool")
    assert ledger.result["is_error"] is True


def test_it_continues_with_the_result_the_reviewer_supplies(team, owner, recorder, log):
    run = _decide(_crashed(team), owner, "edit_result", output="sent by hand")

    assert run.status == "succeeded", run.error
    assert run.output["result"] == "done: sent by hand"
    assert read_calls(log) == []


def test_it_needs_a_result_to_continue_with(team, owner, recorder):
    run = _crashed(team)

    with pytest.raises(ActionError) as error:
        do_decide_review(ReviewItem.objects.get(run=run), owner, "edit_result", submit=False)
    assert error.value.field == "output"


def test_it_retries_a_read_only_call_without_asking(team, recorder, log):
    run = _crashed(team, tool="rec__lookup")

    assert run.status == "succeeded", run.error
    assert [c["tool"] for c in read_calls(log)] == ["lookup"]
    assert read_calls(log)[0]["meta"]["agentdeck.dev/idempotency-key"] == f"run-{run.pk}/work/1/1"
    assert not ReviewItem.objects.filter(run=run).exists()


def test_it_shows_the_reviewer_that_the_call_may_have_run(team, owner, recorder, client):
    item = ReviewItem.objects.get(run=_crashed(team))
    client.force_login(owner)

    page = client.get(f"/review/{item.pk}/").content.decode()

    assert "This call may have run" in page and f"run-{item.run_id}/work/1/1" in page
    assert all(f'value="{action}"' in page for action in ("retry", "skip", "edit_result", "reject"))


def test_it_takes_the_reviewers_result_from_the_review_page(team, owner, recorder, client, log):
    run = _crashed(team)
    client.force_login(owner)

    client.post(f"/review/{ReviewItem.objects.get(run=run).pk}/decide/", {"submit": "edit_result", "call_result": "by hand"})
    wait_for(run, "succeeded", "failed")

    assert run.output["result"] == "done: by hand"
    assert read_calls(log) == []

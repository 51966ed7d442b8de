"""An interrupted side-effecting call whose grant requires approval: the reviewer retries
it, the gateway asks for an approval, the reviewer approves — the run must go on and make
the call once, not pause again for the same interrupted call for ever."""
# Found by an outside review of refused and confirmed calls, which wrote this test; it failed before the fix.

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
from orchestrator.engine.types import ModelResponse, ToolCall, Usage
from orchestrator.execution import execute_run
from orchestrator.models import LedgerEntry, ReviewItem, Run, StepRun
from tests.conftest import pipeline, scripted, start, start_servers
from tests.fakes.mcp_recording_server import read_calls

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = str(settings.BASE_DIR)
SPEC = {"steps": [{"kind": "agent", "id": "work", "agent": "w", "prompt": "go"}]}


@pytest.fixture
def log(tmp_path):
    return str(tmp_path / "upstream.jsonl")


@pytest.fixture
def recorder(team, gateway_runtime, log):
    server = do_save_server(team.pk, "rec", transport="stdio", command=sys.executable,
                            args=["-m", "tests.fakes.mcp_recording_server", log], cwd=ROOT, operator=True)
    do_grant(server, agent="w", require_approval=True)
    start_servers(gateway_runtime, server)
    return server


def _resume(run: Run) -> Run:
    async_to_sync(execute_run)(run.pk)
    run.refresh_from_db()
    return run


def _crashed(team) -> Run:
    arguments = {"message": "m"}
    scripted(team, "w", {"tool_calls": [{"name": "rec__send", "arguments": arguments}]}, {"text": "done: {{last}}"})
    run = start(pipeline(team, SPEC))
    response = ModelResponse(text="", tool_calls=[ToolCall("call_0_0", "rec__send", arguments)], usage=Usage(5, 5),
                             stop_reason="tool_use", model="scripted-1")
    LedgerEntry.objects.create(run=run, step_key="work", attempt=1, index=0, kind="model", name="scripted-1",
                               request={"turn": 1, "messages": 0}, result={"response": response.to_dict()})
    StepRun.objects.create(run=run, key="work", step_id="work", kind="agent", status="running", attempt=1, agent_name="w",
                           started_at=timezone.now())
    AuditEntry.objects.create(team_id=team.pk, principal_kind="agent", agent_name="w", run_id=run.pk, step_key="work",
                              call_id="call_0_0", tool_name="rec__send", arguments=arguments, status=CallStatus.STARTED,
                              idempotency_key=f"run-{run.pk}/work/1/1", dispatch_id="dead", created_at=timezone.now())
    return _resume(run)


def test_retry_of_an_interrupted_call_needing_approval_completes_once_approved(team, owner, recorder, log):
    run = _crashed(team)
    assert run.status == "waiting_review"
    assert ReviewItem.objects.get(run=run, status="pending").reason == "failure"

    do_decide_review(ReviewItem.objects.get(run=run, status="pending"), owner, "retry", submit=False)
    run = _resume(run)
    # the retried call needs the grant's approval
    assert run.status == "waiting_review"
    item = ReviewItem.objects.get(run=run, status="pending")
    assert item.reason == "approval", item.context

    do_decide_review(item, owner, "approve", submit=False)
    run = _resume(run)

    pending = list(ReviewItem.objects.filter(run=run, status="pending").values_list("reason", "context"))
    assert run.status == "succeeded", (run.status, pending)
    assert [c["tool"] for c in read_calls(log)] == ["send"]


def test_rejecting_the_approval_of_a_retried_interrupted_call_is_audited_and_ends_the_question(team, owner, recorder, log):
    run = _crashed(team)
    do_decide_review(ReviewItem.objects.get(run=run, status="pending"), owner, "retry", submit=False)
    run = _resume(run)
    item = ReviewItem.objects.get(run=run, status="pending")
    assert item.reason == "approval", item.context

    do_decide_review(item, owner, "reject", note="do not send it again", submit=False)
    run = _resume(run)

    assert read_calls(log) == []  # never made
    pending = list(ReviewItem.objects.filter(run=run, status="pending").values_list("reason", flat=True))
    # the person's rejection is the answer: the run must not ask "this call may have run" again
    assert pending == [], (run.status, pending)
    # and the refused call has its audit row with the reviewer's reason
    assert AuditEntry.objects.filter(run_id=run.pk, status="approval_rejected",
                                     error__contains="do not send it again").exists(), \
        list(AuditEntry.objects.filter(run_id=run.pk).values_list("status", "error"))

"""An approval is for one attempt and place (its idempotency key, `ToolApproval.idempotency_key`).
A row written before the key was kept has none: a run that paused for it before the upgrade
and is decided after it must still find it (a first version put the key in the request hash,
and such a run paused again with a fresh request, the person's verdict ignored)."""
# Found by a second outside review (of the approvals' attempt scope), which wrote these tests; each failed before its fix.
from __future__ import annotations

import hashlib
import json
import sys

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings

from mcpgateway.actions.access import do_grant
from mcpgateway.actions.servers import do_save_server
from mcpgateway.dispatch import _principal_key
from mcpgateway.models import ToolApproval
from mcpgateway.types import Principal
from orchestrator.actions import do_decide_review
from orchestrator.execution import execute_run
from orchestrator.models import ReviewItem
from tests.conftest import pipeline, scripted, start, start_servers

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = str(settings.BASE_DIR)
SPEC = {"steps": [{"kind": "agent", "id": "work", "agent": "w", "prompt": "go"}]}


def _old_hash(row: ToolApproval, team_id: int) -> str:
    """`_request_hash` of the rows written before the key was kept (the same formula)."""
    p = Principal(team_id=team_id, agent=row.agent_name)
    body = json.dumps({"tool": row.tool_name, "arguments": row.arguments, "run": row.run_id, "step": row.step_key,
                       "call": row.call_id, "who": [_principal_key(p), p.user_id]}, sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def _run(run):
    async_to_sync(execute_run)(run.pk)
    run.refresh_from_db()
    return run


def test_an_approval_requested_before_the_hash_change_is_honoured_after_it(team, owner, gateway_runtime):
    server = do_save_server(team.pk, "echo", transport="stdio", command=sys.executable,
                            args=["-m", "tests.fakes.mcp_echo_server"], cwd=ROOT, operator=True)
    do_grant(server, agent="w", require_approval=True)
    start_servers(gateway_runtime, server)
    scripted(team, "w", {"tool_calls": [{"name": "echo__echo", "arguments": {"message": "wire $1M"}}]},
             {"text": "result: {{last}}"})
    run = _run(start(pipeline(team, SPEC)))
    assert run.status == "waiting_review"
    row = ToolApproval.objects.get(run_id=run.pk)
    # the row as the code before the upgrade wrote it
    ToolApproval.objects.filter(pk=row.pk).update(request_hash=_old_hash(row, team.pk), idempotency_key="")

    do_decide_review(ReviewItem.objects.get(run=run, status="pending"), owner, "approve", submit=False)
    run = _run(run)

    pending = list(ReviewItem.objects.filter(run=run, status="pending").values_list("reason", flat=True))
    assert run.status == "succeeded", (run.status, pending, ToolApproval.objects.filter(run_id=run.pk).count())

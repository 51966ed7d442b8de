"""The run page's tree after a confirmation was decided: the call appears once, with its
outcome — not also as a second copy "waiting for approval" for ever."""
# Found by an outside review of refused and confirmed calls, which wrote this test; it failed before the fix.

from __future__ import annotations

import sys

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings

from dashboard.runs.tree import build_run_tree
from mcpgateway.actions.access import do_grant
from mcpgateway.actions.servers import do_save_server
from orchestrator.actions import do_decide_review
from orchestrator.execution import execute_run
from tests.conftest import pipeline, scripted, start, start_servers

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = str(settings.BASE_DIR)
SPEC = {"steps": [{"kind": "agent", "id": "work", "agent": "worker", "prompt": "do it"}]}


def _run(run):
    async_to_sync(execute_run)(run.pk)
    run.refresh_from_db()
    return run


@pytest.mark.parametrize("action", ["approve", "reject"])
def test_a_decided_confirmation_shows_once_with_its_outcome(team, gateway_runtime, owner, action):
    server = do_save_server(team.pk, "echo", transport="stdio", command=sys.executable,
                            args=["-m", "tests.fakes.mcp_echo_server"], cwd=ROOT, operator=True)
    do_grant(server, agent="worker", require_approval=True)
    start_servers(gateway_runtime, server)
    scripted(team, "worker", {"tool_calls": [{"name": "echo__echo", "arguments": {"message": "wire $1M"}}]},
             {"text": "result: {{last}}"})
    run = _run(start(pipeline(team, SPEC)))
    assert run.status == "waiting_review"
    do_decide_review(run.review_items.get(), owner, action, note="no", submit=False)
    run = _run(run)
    assert run.status == "succeeded", run.error

    node = build_run_tree(run).index["work"]
    states = [(c.call_id, c.state) for t in node.turns for c in t.tool_calls]
    assert states == [("call_0_0", "ok" if action == "approve" else "error")], states

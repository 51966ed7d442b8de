"""An approval is for one call: the same run, step, call id and arguments in *another attempt*
(another idempotency key) must ask a human again, not consume the earlier decision."""
# Found by an outside review of refused and confirmed calls, which wrote this test; it failed before the fix.

from __future__ import annotations

import sys

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings

from mcpgateway.actions.access import do_grant
from mcpgateway.actions.approvals import do_decide_approval
from mcpgateway.actions.servers import do_save_server
from mcpgateway.dispatch import team_gateway
from mcpgateway.idempotency import call_key
from mcpgateway.models import ToolApproval
from mcpgateway.types import ApprovalRequired, Principal, ToolInvocation
from tests.conftest import pipeline, scripted, start, start_servers

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = str(settings.BASE_DIR)


def test_an_approval_for_attempt_1_is_not_consumed_by_attempt_2(team, owner, gateway_runtime):
    server = do_save_server(team.pk, "echo", transport="stdio", command=sys.executable,
                            args=["-m", "tests.fakes.mcp_echo_server"], cwd=ROOT, operator=True)
    do_grant(server, agent="w", require_approval=True)
    start_servers(gateway_runtime, server)
    scripted(team, "w", {"text": "x"})
    run = start(pipeline(team, {"steps": [{"kind": "agent", "id": "work", "agent": "w", "prompt": "go"}]}))
    gateway = team_gateway(team.pk)

    def invocation(attempt: int) -> ToolInvocation:
        return ToolInvocation(Principal(team_id=team.pk, agent="w"), "echo__echo", {"message": "wire $1M"},
                              call_id="call_0_0", run_id=run.pk, step_key="work",
                              idempotency_key=call_key(run.pk, "work", attempt, 1))

    with pytest.raises(ApprovalRequired) as first:
        async_to_sync(gateway.call_tool)(invocation(1))
    do_decide_approval(first.value.approval_id, True, owner)

    # attempt 2 of the step: same call id (the scripted provider's ids restart) and arguments
    with pytest.raises(ApprovalRequired):
        async_to_sync(gateway.call_tool)(invocation(2))
    assert ToolApproval.objects.get(pk=first.value.approval_id).status == "approved"  # still attempt 1's

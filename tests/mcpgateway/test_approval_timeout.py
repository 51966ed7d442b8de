# Found by an outside review (2026-12-07, the review queue outside a console); failed before its fix.
"""A call from outside a run (/mcp) whose grant requires approval, and nobody decides in time."""

from __future__ import annotations

from asgiref.sync import async_to_sync

from mcpgateway.actions.access import do_grant
from mcpgateway.dispatch import Gateway
from mcpgateway.models import AuditEntry, ToolApproval
from mcpgateway.types import ToolInvocation
from tests.conftest import start_servers
from tests.mcpgateway.conftest import agent
from tests.mcpgateway.test_dispatch import echo_server


def test_an_approval_nobody_decided_in_time_is_closed_with_the_call(gateway_runtime, settings):
    """The caller is told "not approved: no decision in time" and the call is audited
    approval_rejected, but its approval row stayed `pending` for ever: a later "approve"
    (admin) is accepted and changes nothing, and the row says a call still waits."""
    settings.GATEWAY_APPROVAL_WAIT_S = 1
    server = echo_server()
    do_grant(server, agent="a", require_approval=True)
    start_servers(gateway_runtime, server)

    result = async_to_sync(Gateway(1).call_tool)(ToolInvocation(agent("a"), "echo__echo", {"message": "x"}, call_id="c1"))

    assert result.is_error and "no decision in time" in result.content
    assert AuditEntry.objects.filter(status="approval_rejected").count() == 1
    approval = ToolApproval.objects.get(run_id=None)
    assert approval.status == "rejected" and approval.note == "no decision in time", (approval.status, approval.note)

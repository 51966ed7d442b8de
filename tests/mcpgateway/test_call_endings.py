"""A call from outside a run leaves its audit row however it ends: also when the caller goes
away and the server cancels it mid-call (daphne does so 10 s after a client disconnects, and
at shutdown), with the upstream call in flight (`interrupted`: it may have run) or before it
was made. Real gateway, real stdio echo server, the real deferred audit writer."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import async_to_sync

from mcpgateway import catalogue
from mcpgateway.audit_batch import flush_audit
from mcpgateway.dispatch import Gateway
from mcpgateway.models import AuditEntry, CallStatus, Tool
from mcpgateway.types import Principal, ToolInvocation
from tests.mcpgateway.test_mcp_fast_path import echo_team  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("retry_safe", [True, False], ids=["read-only", "side-effecting"])
def test_a_call_cancelled_mid_upstream_is_audited_as_interrupted(echo_team, retry_safe):  # noqa: F811
    team, server, key, _ = echo_team
    Tool.objects.filter(server=server, name="slow").update(retry_safe=retry_safe)
    catalogue.invalidate()
    gateway = Gateway(defer_audit=True)
    principal = Principal(team_id=team.pk, user_id=key.user_id, api_key_id=key.pk)

    async def cancelled_mid_call() -> None:
        call = asyncio.create_task(gateway.call_tool(ToolInvocation(
            principal=principal, name="echo__slow", arguments={"seconds": 3}, call_id="c1")))
        await asyncio.sleep(1.0)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call

    async_to_sync(cancelled_mid_call)()
    assert flush_audit(timeout=10)
    rows = list(AuditEntry.objects.filter(api_key_id=key.pk).values_list("tool_name", "status", "error"))
    assert len(rows) == 1, rows  # one row, whether it was `started` first (side-effecting) or not
    assert rows[0][:2] == ("echo__slow", CallStatus.INTERRUPTED)
    assert "may have run" in rows[0][2]

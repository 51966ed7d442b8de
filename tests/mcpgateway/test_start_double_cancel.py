"""_Audit.start shields the `started` row's write from *one* cancel, but a second cancel
(a step timeout then a hand-back; the server cancelling a request handler whose TaskGroup
already cancelled it; asyncio.run's teardown after a client disconnect) lands in the inner
`await asyncio.shield(pending)`: the write is still pending, so `dispatch_id` is cleared --
while the writer thread commits the `started` row anyway. The outcome is then written as a
second row and the first stays `started` for good: the very fault 3c29dd8 set out to fix."""
# Found by a review of the first fix, which wrote this test; it failed before the fix and describes the fault it guards against.
from __future__ import annotations

import asyncio
import time

import pytest
from asgiref.sync import async_to_sync

from mcpgateway import catalogue
from mcpgateway.audit_batch import flush_audit
from mcpgateway.dispatch import Gateway
from mcpgateway.models import AuditEntry, Tool
from mcpgateway.ratelimit import gateway_writes
from mcpgateway.types import Principal, ToolInvocation
from tests.mcpgateway.test_mcp_fast_path import echo_team  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


def test_cancelled_twice_during_started_commit_leaves_one_row(echo_team, monkeypatch):  # noqa: F811
    team, server, key, _ = echo_team
    Tool.objects.filter(server=server, name="slow").update(retry_safe=False)  # side-effecting: `started` first
    catalogue.invalidate()
    gateway = Gateway(defer_audit=True)
    principal = Principal(team_id=team.pk, user_id=key.user_id, api_key_id=key.pk)
    flush, durable = gateway_writes._kinds["audit"]

    def slow_flush(rows):  # a busy database: the durable commit takes a while
        time.sleep(0.5)
        return flush(rows)

    monkeypatch.setitem(gateway_writes._kinds, "audit", (slow_flush, durable))

    async def cancelled_twice_while_starting() -> None:
        call = asyncio.create_task(gateway.call_tool(ToolInvocation(
            principal=principal, name="echo__slow", arguments={"seconds": 0}, call_id="c1")))
        await asyncio.sleep(0.2)  # inside `_Audit.start()`, awaiting the `started` row's commit
        call.cancel()
        await asyncio.sleep(0.05)
        call.cancel()  # a second cancel while the start still waits
        with pytest.raises(asyncio.CancelledError):
            await call
        await asyncio.sleep(0.8)  # the writer thread commits the `started` row regardless

    async_to_sync(cancelled_twice_while_starting)()
    assert flush_audit(timeout=10)
    rows = list(AuditEntry.objects.filter(api_key_id=key.pk).order_by("id").values_list("status", "dispatch_id"))
    assert len(rows) == 1 and rows[0][0] != "started", rows

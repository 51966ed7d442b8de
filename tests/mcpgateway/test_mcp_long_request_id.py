# Found by an outside review (2026-12-07, input boundaries); failed before its fix.
"""/mcp: a tools/call whose JSON-RPC id is a long string fails when the grant needs approval.

What is wrong (severity: medium): the gateway keeps the client's JSON-RPC id as the call id.
The audit writers cut it to the column's 100 characters (`dispatch.py`, `call_id[:100]`), but
`mcpgateway/dispatch.py:_approval_row` creates the `ToolApproval` with
`call_id=storable(invocation.call_id)` uncut. JSON-RPC and MCP put no bound on a string id
(clients use UUID-based or path-like ids), so on PostgreSQL a 150-character id on a tool whose
grant has `require_approval` makes the approval's INSERT fail ("value too long for type
character varying(100)"): the client gets `Tool 'echo__echo' failed (DataError).` instead of
an approval wait, and no approval ever reaches the review queue. SQLite does not enforce the
length, which is why the suite does not see it: on SQLite this test fails on the stored id's
length; with DATABASE_URL pointing at PostgreSQL it fails on the missing approval.

Correct behaviour: the id is cut (or hashed) to what the column holds, as the audit rows do,
or refused at the door with a JSON-RPC error naming `id`; the call then waits for approval.
"""

from __future__ import annotations

import json

import httpx2
import pytest
from mcp_types import CLIENT_CAPABILITIES_META_KEY, PROTOCOL_VERSION_META_KEY

from mcpgateway.models import Grant, ToolApproval
from tests.mcpgateway.test_mcp_fast_path import echo_team  # noqa: F401  (fixture)
from tests.mcpgateway.test_mcp_lean_call import MODERN, _served

pytestmark = [pytest.mark.django_db(transaction=True)]


def test_a_long_jsonrpc_id_on_an_approval_tool_waits_for_approval(echo_team, settings):  # noqa: F811
    settings.GATEWAY_APPROVAL_WAIT_S = 3
    _team, server, _key, token = echo_team
    Grant.objects.filter(server=server).update(require_approval=True)
    from mcpgateway import catalogue
    catalogue.invalidate()
    long_id = "req-" + "0123456789abcdef" * 9  # 148 characters
    body = {"jsonrpc": "2.0", "id": long_id, "method": "tools/call",
            "params": {"name": "echo__echo", "arguments": {"message": "hi"},
                       "_meta": {PROTOCOL_VERSION_META_KEY: MODERN, CLIENT_CAPABILITIES_META_KEY: {}}}}
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
               "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": MODERN,
               "Mcp-Method": "tools/call", "Mcp-Name": "echo__echo"}
    _, served = _served()
    with served:
        response = httpx2.post(served.url, content=json.dumps(body).encode(), headers=headers, timeout=30)
    text = response.text
    assert ToolApproval.objects.filter(team_id=server.team_id).exists(), (
        f"no approval row was written for the call with a {len(long_id)}-character id; "
        f"the client got {response.status_code}: {text[:600]}")
    stored = ToolApproval.objects.get(team_id=server.team_id).call_id
    limit = ToolApproval._meta.get_field("call_id").max_length
    assert len(stored) <= limit, (
        f"the approval row holds a {len(stored)}-character call id in a varchar({limit}) column "
        "(SQLite stores it; PostgreSQL refuses the INSERT and the call fails with DataError)")

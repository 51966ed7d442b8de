# Found by an outside review (2026-12-07, the async pool and the /mcp path); failed before its fix.
"""/mcp while the database is out of reach answers 503 with `Retry-After`, as every other
request does (README, "Connection budget": "A request that waits longer than
`DB_POOL_TIMEOUT_S` ... or finds the database unreachable, gets a 503 with `Retry-After`").

/mcp is routed before Django (config/asgi.py), so `DatabaseUnavailableMiddleware` never sees
it; the endpoint's guard (`mcpgateway/downstream/access.py`, `principal_for`) catches only its
own deadline, and a key not in the short-lived cache is looked up in the database
(`orchestrator/api_auth.py`, `authenticate_mcp` → `_mcp_principal` → `authenticate_token`).
The OperationalError escapes the ASGI app and daphne answers a bare 500 "Internal Server
Error" — which MCP clients do not retry as they would a 503 — for every client whose key is
not cached at that moment (every client after a restart, every key at least every
MCP_KEY_CACHE_TTL_S).

Same set-up as tests/test_database_unreachable_pages.py: daphne with DATABASE_URL pointing at
a port where no PostgreSQL listens."""

from __future__ import annotations

import json

import httpx2
import pytest
from mcp_types import CLIENT_CAPABILITIES_META_KEY, PROTOCOL_VERSION_META_KEY

from tests.conftest import _free_port, serving

pytestmark = [pytest.mark.slow]
MODERN = "2026-07-28"


def test_mcp_answers_503_with_retry_after_when_the_database_is_unreachable():
    nowhere = f"postgres://postgres@127.0.0.1:{_free_port()}/agentdeck"
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "echo__echo", "arguments": {"message": "hi"},
                       "_meta": {PROTOCOL_VERSION_META_KEY: MODERN, CLIENT_CAPABILITIES_META_KEY: {}}}}
    headers = {"Authorization": "Bearer adk_" + "x" * 43, "Content-Type": "application/json",
               "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": MODERN,
               "Mcp-Method": "tools/call", "Mcp-Name": "echo__echo"}
    with serving({"DATABASE_URL": nowhere, "DB_POOL_MIN": "0", "DB_POOL_TIMEOUT_S": "2",
                  "GATEWAY_AUTOSTART": "false"}) as base:
        response = httpx2.post(f"{base}/mcp", content=json.dumps(body).encode(), headers=headers, timeout=30)

    assert response.status_code == 503, (response.status_code, response.text[:300])
    assert response.headers.get("retry-after"), "a 503 for an unreachable database says when to retry"

# Found by an outside review (2026-12-07, the async pool and the /mcp path); failed before its fix.
"""One key cannot take every legacy (2025-11-25) session of the instance.

The endpoint's SDK session manager is built with the SDK's defaults
(`mcpgateway/downstream/endpoint.py`, `_start_manager`): at most `DEFAULT_MAX_SESSIONS`
(10 000) stateful sessions for the whole process, each kept until its client sends DELETE or
30 minutes pass without a request. Nothing counts sessions per key or per team, and /mcp has
no request rate limit, so one team's key — a client that never closes its sessions (killed
CI jobs, scripts), or one that means to — fills the process-wide table with `initialize`
requests, and from then on every other team's legacy client is refused (503 "Too many open
sessions") for up to half an hour.

Real parts: the endpoint as config/asgi.py builds it (the real gateway and `authenticate_mcp`)
under uvicorn, two teams' keys from the database, raw `initialize` posts. Opening 10 000
sessions takes a while: this test is slow on purpose (the SDK's own cap is left as it is)."""

from __future__ import annotations

import asyncio
import json

import httpx2
import pytest
from django.contrib.auth import get_user_model
from mcp.server.streamable_http_manager import DEFAULT_MAX_SESSIONS

from mcpgateway.actions.access import do_create_api_key
from mcpgateway.dispatch import Gateway
from mcpgateway.downstream import build_mcp_app
from orchestrator import api_auth
from orchestrator.actions import do_create_team
from tests.mcpgateway.test_downstream import ServedEndpoint

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
LEGACY = "2025-11-25"
INITIALIZE = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "leaky", "version": "0"}}}).encode()
HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
WAVE = 64


async def _open_until_refused(url: str, token: str, at_most: int) -> tuple[int, int | None]:
    """Open sessions with `token` (never closing them) until one is refused or `at_most` are open."""
    opened, refused = 0, None
    async with httpx2.AsyncClient(headers={**HEADERS, "Authorization": f"Bearer {token}"},
                                  timeout=httpx2.Timeout(30.0)) as http:
        while opened < at_most and refused is None:
            wave = min(WAVE, at_most - opened)
            answers = await asyncio.gather(*(http.post(url, content=INITIALIZE) for _ in range(wave)))
            for answer in answers:
                if answer.status_code == 200 and answer.headers.get("mcp-session-id"):
                    opened += 1
                elif refused is None:
                    refused = answer.status_code
    return opened, refused


def test_one_keys_open_sessions_do_not_lock_other_teams_out():
    users = get_user_model().objects
    leaky_owner, other_owner = users.create_user("leaky"), users.create_user("other")
    leaky_team, other_team = do_create_team("Leaky", leaky_owner), do_create_team("Other", other_owner)
    _, leaky_token = do_create_api_key(leaky_team.pk, "client", leaky_owner)
    _, other_token = do_create_api_key(other_team.pk, "client", other_owner)
    api_auth.forget_mcp_keys()

    endpoint = build_mcp_app(authenticate=api_auth.authenticate_mcp, toolbox=Gateway(defer_audit=True),
                             allowed_hosts=["127.0.0.1"])
    with ServedEndpoint(endpoint) as served:
        opened, _ = asyncio.run(_open_until_refused(served.url, leaky_token, DEFAULT_MAX_SESSIONS + 1))
        other = httpx2.post(served.url, content=INITIALIZE, timeout=30,
                            headers={**HEADERS, "Authorization": f"Bearer {other_token}"})

    assert other.status_code == 200 and other.headers.get("mcp-session-id"), (
        f"after one key of team 'Leaky' opened {opened} sessions, team 'Other' was refused a session "
        f"({other.status_code}: {other.text[:200]})")


def test_a_team_at_its_session_limit_opens_again_once_one_ends_and_stateless_calls_go_on():
    """The limit counts open sessions only: a DELETE frees a place at once, and a 2026-07-28
    request (stateless, no session) is never refused by it."""
    owner = get_user_model().objects.create_user("capped")
    team = do_create_team("Capped", owner)
    _, token = do_create_api_key(team.pk, "client", owner)
    api_auth.forget_mcp_keys()
    auth = {**HEADERS, "Authorization": f"Bearer {token}"}
    endpoint = build_mcp_app(authenticate=api_auth.authenticate_mcp, toolbox=Gateway(defer_audit=True),
                             allowed_hosts=["127.0.0.1"], sessions_per_team=3)
    with ServedEndpoint(endpoint) as served:
        opened = [httpx2.post(served.url, content=INITIALIZE, headers=auth, timeout=30) for _ in range(3)]
        assert [a.status_code for a in opened] == [200, 200, 200]
        refused = httpx2.post(served.url, content=INITIALIZE, headers=auth, timeout=30)
        assert refused.status_code == 429 and refused.headers.get("retry-after"), refused.text[:200]

        modern = httpx2.post(served.url, headers={**auth, "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "server/discover"},
                             content=json.dumps({"jsonrpc": "2.0", "id": 7, "method": "server/discover", "params": {
                                 "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                                           "io.modelcontextprotocol/clientCapabilities": {}}}}).encode(), timeout=30)
        assert modern.status_code != 429, modern.text[:200]

        session = opened[0].headers["mcp-session-id"]
        ended = httpx2.delete(served.url, headers={**auth, "Mcp-Session-Id": session, "MCP-Protocol-Version": LEGACY},
                              timeout=30)
        assert ended.status_code in (200, 204), ended.text[:200]
        again = httpx2.post(served.url, content=INITIALIZE, headers=auth, timeout=30)
        assert again.status_code == 200 and again.headers.get("mcp-session-id"), again.text[:200]

# Found by an outside review (2026-12-07, the operator/team boundary); failed before its fix.
"""/mcp calls tools, so it asks what every door that calls tools asks: a key with the `run`
scope whose user is a builder or owner (or a service account with `run`).

`mcp.call` required no scope and no role: a `read` service-account key and a viewer's `read`
key called a team-wide granted tool over /mcp (audited `ok`), while the same viewer got 403 on
the tools page. With the team's sandbox granted team-wide, a "read-only" key ran code. Such a
key now gets 403 `insufficient_scope` naming what it lacks; a builder's `run` key still calls."""

from __future__ import annotations

import asyncio
import sys

import httpx2
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from mcp import Client as McpClient
from mcp.client.streamable_http import streamable_http_client

from mcpgateway.actions.access import do_create_api_key, do_grant
from mcpgateway.actions.servers import do_save_server
from mcpgateway.downstream.access import KeyNotAllowed
from mcpgateway.models import AuditEntry
from orchestrator.actions import do_add_member, do_create_team
from tests.conftest import serving, start_servers

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


async def _call(url, token, name, args):
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        async with McpClient(streamable_http_client(url, http_client=http)) as client:
            return await client.call_tool(name, args)


def test_only_a_run_key_of_a_builder_calls_tools_over_mcp(gateway_runtime):
    users = get_user_model().objects
    owner, viewer, builder = users.create_user("own"), users.create_user("view"), users.create_user("build")
    team = do_create_team("Acme", owner)
    do_add_member(team, viewer, "viewer")
    do_add_member(team, builder, "builder")
    server = do_save_server(team.pk, "echo", transport="stdio", command=sys.executable,
                            args=["-m", "tests.fakes.mcp_echo_server"], cwd=str(settings.BASE_DIR), operator=True)
    start_servers(gateway_runtime, server)
    do_grant(server)  # team-wide, as the demo's and the templates' tools are
    refused = {
        "read service account": do_create_api_key(team.pk, "reader", None, scopes=["read"], service_account=True)[1],
        "viewer's read key": do_create_api_key(team.pk, "viewer", viewer, scopes=["read"])[1],
        "viewer's run key": do_create_api_key(team.pk, "viewer-run", viewer, scopes=["read", "run"])[1],
        "builder's read key": do_create_api_key(team.pk, "builder-read", builder, scopes=["read"])[1],
    }
    allowed = {
        "builder's run key": do_create_api_key(team.pk, "builder-run", builder, scopes=["run"])[1],
        "run service account": do_create_api_key(team.pk, "runner", None, scopes=["run"], service_account=True)[1],
    }
    with serving() as base_url:
        url = f"{base_url}/mcp/"
        for label, token in refused.items():
            response = httpx2.post(url, headers={"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream",
                                                 "Content-Type": "application/json"},
                                   json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}, timeout=30)
            assert response.status_code == 403, (label, response.status_code, response.text[:300])
            assert response.json()["error"] == "insufficient_scope", label
            assert "`run` scope" in response.json()["error_description"], label
            assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"], label
        for label, token in allowed.items():
            result = asyncio.run(_call(url, token, "echo__echo", {"message": f"called by {label}"}))
            assert not result.is_error, (label, result.content)
    assert AuditEntry.objects.filter(tool_name="echo__echo", status="ok").count() == 2


def test_a_demoted_members_key_is_dropped_from_the_key_cache_at_once(settings):
    """The key cache (MCP_KEY_CACHE_TTL_S) kept a demoted builder's key calling tools until its
    entry expired: a role change now drops the cache in the process where it commits, as a key's
    or a grant's change does (a second review)."""
    from orchestrator.api_auth import authenticate_mcp, known_mcp_principal

    settings.MCP_KEY_CACHE_TTL_S = 300.0  # long: only the role change can end the key's entry
    users = get_user_model().objects
    owner, builder = users.create_user("own"), users.create_user("build")
    team = do_create_team("Acme", owner)
    do_add_member(team, builder, "builder")
    token = do_create_api_key(team.pk, "builder-run", builder, scopes=["read", "run"])[1]
    assert asyncio.run(authenticate_mcp(token)) is not None
    assert known_mcp_principal(token) is not None  # answered from memory from now on

    do_add_member(team, builder, "viewer")

    assert known_mcp_principal(token) is None
    with pytest.raises(KeyNotAllowed):
        asyncio.run(authenticate_mcp(token))

"""The real product's `/mcp/` endpoint, served by daphne in its own process, used by the
SDK's MCP client with API keys: each key sees exactly its granted tools, and every call
leaves one audit row."""

from __future__ import annotations

import asyncio
import sys
import time
import urllib.request
from pathlib import Path

import httpx2
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcpgateway.actions.access import do_create_api_key, do_grant
from mcpgateway.actions.servers import do_save_server
from mcpgateway.models import AuditEntry
from orchestrator.actions import do_add_member, do_create_team
from orchestrator.models import Membership
from tests.conftest import start_servers

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
ROOT = Path(settings.BASE_DIR)


@pytest.fixture
def daphne(live_app):
    """The product's /mcp endpoint, under daphne in its own process (tests/conftest.py)."""
    return f"{live_app}/mcp/"


async def _session(url: str, token: str, work, mode: str = "auto"):
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
            return await work(client)


def test_it_serves_each_key_exactly_its_granted_tools(gateway_runtime, daphne):
    user = get_user_model().objects.create_user("ci")
    team, other_team = do_create_team("Acme", user), do_create_team("Other", user)
    server = do_save_server(team.pk, "echo", transport="stdio", command=sys.executable,
                            args=["-m", "tests.fakes.mcp_echo_server"], cwd=str(ROOT), operator=True)
    start_servers(gateway_runtime, server)  # discovery fills the catalogue
    narrow, narrow_token = do_create_api_key(team.pk, "narrow", user)
    wide, wide_token = do_create_api_key(team.pk, "wide", user)
    _, other_team_token = do_create_api_key(other_team.pk, "other", user)
    do_grant(server, api_key=narrow, tool=server.tools.get(name="echo"))
    do_grant(server, api_key=wide)

    async def narrow_work(client):
        tools = sorted(t.name for t in (await client.list_tools()).tools)
        ok = await client.call_tool("echo__echo", {"message": "over mcp"})
        refused = await client.call_tool("echo__add", {"a": 1, "b": 2})
        return tools, ok, refused

    async def list_only(client):
        return sorted(t.name for t in (await client.list_tools()).tools)

    tools, ok, refused = asyncio.run(_session(daphne, narrow_token, narrow_work))
    wide_tools = asyncio.run(_session(daphne, wide_token, list_only, mode="legacy"))
    other_tools = asyncio.run(_session(daphne, other_team_token, list_only))

    assert tools == ["echo__echo"]
    assert not ok.is_error and "over mcp" in ok.content[0].text
    assert refused.is_error and "not allowed" in refused.content[0].text
    assert {"echo__echo", "echo__add", "echo__fail"} <= set(wide_tools)
    assert other_tools == []
    rows = list(AuditEntry.objects.order_by("id").values_list("tool_name", "status", "api_key_id"))
    assert rows == [("echo__echo", "ok", narrow.pk), ("echo__add", "denied", narrow.pk)]


def test_it_refuses_requests_without_a_valid_key(daphne):
    for headers in ({}, {"Authorization": "Bearer adk_wrong"}):
        request = urllib.request.Request(daphne, data=b"{}", headers={"Content-Type": "application/json", **headers})
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=10)
        assert info.value.code == 401
        assert info.value.headers["WWW-Authenticate"].startswith("Bearer")


def test_it_refuses_the_key_of_a_user_who_left_the_team(daphne):
    owner, leaver = get_user_model().objects.create_user("boss"), get_user_model().objects.create_user("leaver")
    team = do_create_team("Acme", owner)
    do_add_member(team, leaver, "builder")
    _, token = do_create_api_key(team.pk, "mine", leaver)

    async def list_only(client):
        return [t.name for t in (await client.list_tools()).tools]

    assert asyncio.run(_session(daphne, token, list_only)) == []  # a member: allowed in, no grants yet
    Membership.objects.filter(user=leaver).delete()
    request = urllib.request.Request(daphne, data=b"{}", headers={"Content-Type": "application/json",
                                                                   "Authorization": f"Bearer {token}"})
    # The web process caches an accepted key for MCP_KEY_CACHE_TTL_S (5 s): refused within it.
    deadline = time.monotonic() + settings.MCP_KEY_CACHE_TTL_S + 3
    while True:
        try:
            urllib.request.urlopen(request, timeout=10).close()
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                break  # (any other answer means the key still got past authentication)
        assert time.monotonic() < deadline, "the key of a user who left still works after the cache's TTL"
        time.sleep(0.2)


@pytest.mark.parametrize("server", ["daphne", "uvicorn"])
def test_with_gateway_on_server_loop_each_server_adopts_its_loop_and_serves_calls(gateway_runtime, server):
    """`GATEWAY_ON_SERVER_LOOP=true`: daphne's loop is adopted when it imports the app, uvicorn's
    (whose CLI imports the app before its loop exists) at the lifespan startup; calls go through,
    audited, and the server stops on SIGTERM."""
    from tests.conftest import serving

    user = get_user_model().objects.create_user("ci")
    team = do_create_team("Acme", user)
    echo = do_save_server(team.pk, "echo", transport="stdio", command=sys.executable,
                          args=["-m", "tests.fakes.mcp_echo_server"], cwd=str(ROOT), operator=True)
    start_servers(gateway_runtime, echo)
    key, token = do_create_api_key(team.pk, "k", user)
    do_grant(echo, api_key=key)

    async def calls(client):
        return [await client.call_tool("echo__echo", {"message": f"on the loop {i}"}) for i in range(3)]

    with serving({"GATEWAY_ON_SERVER_LOOP": "true"}, server=server) as base:
        results = asyncio.run(_session(f"{base}/mcp/", token, calls))
        port = base.rsplit(":", 1)[1]
    log = (Path(settings.VAR_DIR) / f"e2e-{server}-{port}.log").read_text()
    assert [r.is_error for r in results] == [False, False, False]
    assert [r.content[0].text for r in results] == [f"on the loop {i}" for i in range(3)]
    assert "the gateway runs on the server's event loop" in log, log
    assert "already running" not in log and "Traceback" not in log, log
    assert AuditEntry.objects.filter(tool_name="echo__echo", status="ok", api_key_id=key.pk).count() == 3

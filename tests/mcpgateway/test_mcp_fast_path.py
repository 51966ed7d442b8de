"""The /mcp fast path: a short-lived key cache, audit rows committed in batches off the
request path, JSON answers to stateless 2026-07-28 requests, and a per-tool schema lookup
instead of the whole tools/list per call — with both protocol eras still served.

Everything is real: the product's daphne (its own process) or the endpoint under uvicorn,
the SDK's client over HTTP, the Python SDK echo server over stdio as the upstream, the
database for keys and audit rows."""

from __future__ import annotations

import asyncio
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import httpx2
import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth import get_user_model
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.datastructures import Headers

from mcpgateway import audit_batch, catalogue
from mcpgateway.actions.access import do_create_api_key, do_grant, do_revoke_api_key
from mcpgateway.actions.servers import do_save_server
from mcpgateway.audit_batch import AuditBatchWriter, flush_audit
from mcpgateway.background import submit
from mcpgateway.dispatch import Gateway
from mcpgateway.downstream import build_mcp_app
from mcpgateway.downstream.access import RequestGuard
from mcpgateway.models import ApiKey, AuditEntry, CallStatus, Tool
from mcpgateway.types import Principal, ToolInvocation
from orchestrator import api_auth
from orchestrator.actions import do_create_team
from tests.conftest import serving, start_servers
from tests.mcpgateway.test_downstream import ServedEndpoint

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
ROOT = Path(settings.BASE_DIR)
MODERN = "2026-07-28"


@pytest.fixture
def echo_team(gateway_runtime):
    """A team with the stdio echo server (echo marked read-only by the operator), a key granted it."""
    user = get_user_model().objects.create_user("fast")
    team = do_create_team("Fast", user)
    server = do_save_server(team.pk, "echo", transport="stdio", command=sys.executable,
                            args=["-m", "tests.fakes.mcp_echo_server"], cwd=str(ROOT), operator=True)
    start_servers(gateway_runtime, server)
    Tool.objects.filter(server=server, name="echo").update(retry_safe=True)
    key, token = do_create_api_key(team.pk, "client", user)
    do_grant(server, api_key=key)
    catalogue.invalidate()
    api_auth.forget_mcp_keys()
    return team, server, key, token


async def _session(url: str, token: str, work, mode: str = "auto", hooks=None):
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30,
                                  event_hooks={"response": hooks or []}) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
            return await work(client)


def _post_status(url: str, token: str) -> int:
    request = urllib.request.Request(url, data=b"{}", headers={"Content-Type": "application/json",
                                                                "Authorization": f"Bearer {token}"})
    try:
        return urllib.request.urlopen(request, timeout=10).status
    except urllib.error.HTTPError as exc:
        return exc.code


def _echo_rows(key: ApiKey) -> list[tuple[str, str]]:
    return list(AuditEntry.objects.filter(api_key_id=key.pk).order_by("id").values_list("tool_name", "status"))


# --- the key cache ---------------------------------------------------------------------------

def test_it_keeps_a_revoked_key_working_no_longer_than_the_ttl(echo_team, settings):
    settings.MCP_KEY_CACHE_TTL_S = 0.5
    _, _, key, token = echo_team
    assert async_to_sync(api_auth.authenticate_mcp)(token) == Principal(team_id=key.team_id, user_id=key.user_id,
                                                                      api_key_id=key.pk)
    # Revoked behind this process's back (another process's write): the cache may answer
    # for at most the TTL, then the database does.
    ApiKey.objects.filter(pk=key.pk).update(revoked_at="2026-01-01T00:00:00Z")
    started = time.monotonic()
    while async_to_sync(api_auth.authenticate_mcp)(token) is not None:
        assert time.monotonic() - started < 0.5 + 1.0, "a revoked key kept working past the TTL"
        time.sleep(0.05)


def test_it_refuses_a_key_revoked_in_this_process_at_once(echo_team, settings):
    settings.MCP_KEY_CACHE_TTL_S = 60
    _, _, key, token = echo_team
    assert async_to_sync(api_auth.authenticate_mcp)(token) is not None
    do_revoke_api_key(key)

    assert async_to_sync(api_auth.authenticate_mcp)(token) is None


def test_the_guard_answers_from_memory_only_what_the_key_check_would(echo_team, settings):
    """The endpoint's guard asks the cache first (`authenticate_mcp.known`), with no deadline:
    a key revoked in this process is refused at once there too, and a wrong key never passes."""
    settings.MCP_KEY_CACHE_TTL_S = 60
    _, _, key, token = echo_team
    guard = RequestGuard(authenticate=api_auth.authenticate_mcp, allowed_hosts=["*"], allowed_origins=None,
                         realm="agentdeck")

    def ask(bearer: str):
        return async_to_sync(guard.principal_for)(Headers(headers={"authorization": f"Bearer {bearer}"}))

    assert ask(token) == Principal(team_id=key.team_id, user_id=key.user_id, api_key_id=key.pk)
    assert api_auth.known_mcp_principal(token) is not None  # the second ask came from memory
    assert ask(token) == Principal(team_id=key.team_id, user_id=key.user_id, api_key_id=key.pk)
    assert ask(token[:-1] + ("x" if not token.endswith("x") else "y")).status_code == 401
    do_revoke_api_key(key)
    assert api_auth.known_mcp_principal(token) is None
    assert ask(token).status_code == 401


def test_it_never_caches_a_wrong_key_as_valid(echo_team, settings):
    settings.MCP_KEY_CACHE_TTL_S = 60
    _, _, _, token = echo_team
    wrong = token[:-4] + ("aaaa" if not token.endswith("aaaa") else "bbbb")
    for _ in range(3):
        assert async_to_sync(api_auth.authenticate_mcp)(wrong) is None
    assert async_to_sync(api_auth.authenticate_mcp)(token) is not None
    assert async_to_sync(api_auth.authenticate_mcp)(wrong) is None
    assert len(api_auth._mcp_key_cache) == 1


def test_it_stops_a_revoked_key_at_the_real_endpoint_within_the_ttl(echo_team):
    _, _, key, token = echo_team
    with serving({"MCP_KEY_CACHE_TTL_S": "1"}) as base:
        url = f"{base}/mcp"
        tools = asyncio.run(_session(url, token, lambda c: c.list_tools()))
        assert "echo__echo" in [t.name for t in tools.tools]
        ApiKey.objects.filter(pk=key.pk).update(revoked_at="2026-01-01T00:00:00Z")
        started = time.monotonic()
        while _post_status(url, token) != 401:
            assert time.monotonic() - started < 1 + 2.0, "the endpoint accepted a revoked key past the TTL"
            time.sleep(0.05)


# --- audit batching --------------------------------------------------------------------------

def test_it_writes_one_audit_row_per_call_of_a_burst_after_a_flush(echo_team):
    team, _, key, _ = echo_team
    gateway = Gateway(defer_audit=True)
    principal = Principal(team_id=team.pk, user_id=key.user_id, api_key_id=key.pk)

    async def burst():
        calls = [gateway.call_tool(ToolInvocation(principal, "echo__echo", {"message": f"m{i}"}, call_id=str(i)))
                 for i in range(200)]
        return await asyncio.gather(*calls)

    results = submit(burst()).result(timeout=120)
    assert all(not r.is_error for r in results)
    assert flush_audit(timeout=30)

    rows = _echo_rows(key)
    assert len(rows) == 200 and set(rows) == {("echo__echo", CallStatus.OK)}
    # A read-only tool outside a run: one row per call, no `started` row first.
    assert not AuditEntry.objects.exclude(dispatch_id="").exists()


def test_it_keeps_the_started_row_of_a_side_effecting_tool_and_completes_it(echo_team):
    team, server, key, _ = echo_team
    Tool.objects.filter(server=server, name="add").update(retry_safe=False)
    catalogue.invalidate()
    gateway = Gateway(defer_audit=True)
    principal = Principal(team_id=team.pk, user_id=key.user_id, api_key_id=key.pk)

    result = submit(gateway.call_tool(ToolInvocation(principal, "echo__add", {"a": 2, "b": 3}, call_id="x"))).result(60)
    started_row = AuditEntry.objects.get(api_key_id=key.pk)  # committed before the upstream call
    assert flush_audit(timeout=30)

    assert not result.is_error and started_row.dispatch_id
    done = AuditEntry.objects.get(api_key_id=key.pk)
    assert (done.pk, done.status, done.result["content"]) == (started_row.pk, CallStatus.OK, "5")


def test_it_commits_a_batch_when_it_is_full_or_its_window_ends(transactional_db):
    committed: list[list[dict]] = []
    writer = AuditBatchWriter({"audit": committed.append}, flush_ms=100_000, max_rows=5)
    for i in range(5):
        writer.enqueue("audit", {"i": i})
    deadline = time.monotonic() + 10
    while not committed:
        assert time.monotonic() < deadline, "a full batch was not committed"
        time.sleep(0.01)
    assert [r["i"] for r in committed[0]] == [0, 1, 2, 3, 4]

    timed = AuditBatchWriter({"audit": committed.append}, flush_ms=50, max_rows=1000)
    timed.enqueue("audit", {"i": 99})
    deadline = time.monotonic() + 10
    while len(committed) < 2:
        assert time.monotonic() < deadline, "a batch was not committed at the end of its window"
        time.sleep(0.01)
    time.sleep(0.3)  # the thread is idle now: a lone row must still start a window
    timed.enqueue("audit", {"i": 100})
    deadline = time.monotonic() + 5
    while len(committed) < 3:
        assert time.monotonic() < deadline, "a row queued on an idle writer waited past its window"
        time.sleep(0.01)
    writer.stop()
    timed.stop()


def test_it_flushes_deferred_audit_rows_when_daphne_stops(echo_team):
    _, _, key, token = echo_team
    # A window no test waits out: only the stop can have committed the rows.
    with serving({"GATEWAY_AUDIT_FLUSH_MS": "600000", "GATEWAY_AUDIT_BATCH_ROWS": "100000"}) as base:
        async def calls(client):
            return [await client.call_tool("echo__echo", {"message": f"s{i}"}) for i in range(5)]

        results = asyncio.run(_session(f"{base}/mcp", token, calls))
        assert all(not r.is_error for r in results)
        time.sleep(0.5)
        assert _echo_rows(key) == []  # still queued in daphne
    assert _echo_rows(key) == [("echo__echo", CallStatus.OK)] * 5


def test_it_has_the_row_in_the_database_within_the_window_after_the_call(echo_team):
    _, _, key, token = echo_team
    with serving() as base:
        result = asyncio.run(_session(f"{base}/mcp", token, lambda c: c.call_tool("echo__echo", {"message": "w"})))
        returned = time.monotonic()
        assert not result.is_error
        while not _echo_rows(key):
            assert time.monotonic() - returned < 2.0, "the audit row did not appear within its window"
            time.sleep(0.005)
    assert _echo_rows(key) == [("echo__echo", CallStatus.OK)]


# --- the wire: JSON answers, both eras, a per-tool schema lookup -----------------------------

def test_it_answers_stateless_modern_requests_as_json_in_both_eras(echo_team):
    _, _, key, token = echo_team
    seen: list[tuple[str, str, str]] = []

    async def hook(response):
        seen.append((response.request.method, response.request.headers.get("mcp-protocol-version", ""),
                     response.headers.get("content-type", "")))

    async def work(client):
        return await client.call_tool("echo__echo", {"message": "json please"})

    with serving() as base:
        modern = asyncio.run(_session(f"{base}/mcp", token, work, mode=MODERN, hooks=[hook]))
        modern_seen, seen[:] = list(seen), []
        legacy = asyncio.run(_session(f"{base}/mcp/", token, work, mode="legacy"))

    assert "json please" in modern.content[0].text and "json please" in legacy.content[0].text
    posts = [(v, ct) for method, v, ct in modern_seen if method == "POST"]
    assert posts and all(v == MODERN and ct.startswith("application/json") for v, ct in posts)
    deadline = time.monotonic() + 5
    while len(_echo_rows(key)) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert _echo_rows(key) == [("echo__echo", CallStatus.OK)] * 2


class CountingGateway(Gateway):
    """The real gateway, counting how often the whole tool list is built."""

    def __init__(self) -> None:
        super().__init__(defer_audit=True)
        self.listings = 0
        self.lookups = 0

    async def list_tools(self, principal):
        self.listings += 1
        return await super().list_tools(principal)

    def tool_input_schema(self, principal, name):
        self.lookups += 1
        return super().tool_input_schema(principal, name)


def test_it_looks_up_one_tool_schema_per_modern_call_instead_of_listing_all(echo_team):
    _, _, _, token = echo_team
    gateway = CountingGateway()
    endpoint = build_mcp_app(authenticate=api_auth.authenticate_mcp, toolbox=gateway,
                             allowed_hosts=["127.0.0.1"])

    async def work(client):
        await client.list_tools()
        before = gateway.listings
        for i in range(10):
            result = await client.call_tool("echo__echo", {"message": f"n{i}"})
            assert not result.is_error
        return before

    with ServedEndpoint(endpoint) as served:
        before = asyncio.run(_session(served.url, token, work, mode=MODERN))

    assert gateway.listings == before  # no tools/list built for any of the 10 calls
    assert gateway.lookups == 10
    assert audit_batch.flush_audit()

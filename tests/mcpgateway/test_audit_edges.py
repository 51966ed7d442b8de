"""Audit rows at the edges of a call, found by a review of /mcp (both the lean path and the
SDK's share this code): a JSON-RPC id with a lone surrogate (JSON's `\\udc80`) made the call's
row unstorable, and failed the `started` rows of other callers committed in the same batch; a
call cancelled while its `started` row committed left that row `started` beside a second one;
a catalogue snapshot that could not be loaded left no row; a key deleted in the Django admin
was still accepted for the key cache's TTL."""

from __future__ import annotations

import asyncio
import json
import time

import httpx2
import mcp_types as types
import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.db import OperationalError
from django.test import Client
from mcp_types import CLIENT_CAPABILITIES_META_KEY, PROTOCOL_VERSION_META_KEY

from mcpgateway import catalogue
from mcpgateway.actions.access import do_create_api_key
from mcpgateway.audit_batch import audit_writer, flush_audit
from mcpgateway.dispatch import Gateway
from mcpgateway.downstream.tools import call_granted_tool
from mcpgateway.models import ApiKey, AuditEntry, Tool
from mcpgateway.ratelimit import gateway_writes
from mcpgateway.types import Principal, ToolInvocation
from orchestrator import api_auth
from orchestrator.actions import do_create_team
from tests.mcpgateway.test_mcp_fast_path import echo_team  # noqa: F401
from tests.mcpgateway.test_mcp_lean_call import _served

pytestmark = pytest.mark.django_db(transaction=True)
MODERN = "2026-07-28"


# A JSON-RPC id holding a lone surrogate (JSON's "\\udc80" escape, which /mcp accepts) makes the
# call's audit row unstorable: the stand-ins replace only arguments/result/grant, keep the call_id,
# and are refused too, so the row is LOST -- while the (read-only) tool call itself ran.
@pytest.mark.slow
@pytest.mark.parametrize("lean", [True, False], ids=["lean", "sdk"])
def test_a_call_with_a_lone_surrogate_id_is_audited(echo_team, lean):  # noqa: F811
    _team, _server, key, token = echo_team
    endpoint, served = _served()
    body = json.dumps({"jsonrpc": "2.0", "id": "x", "method": "tools/call",
                       "params": {"name": "echo__echo", "arguments": {"message": "hi"},
                                  "_meta": {PROTOCOL_VERSION_META_KEY: MODERN, CLIENT_CAPABILITIES_META_KEY: {}}}})
    raw = body.replace('"id": "x"', '"id": "\\udc80"').encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Accept": "application/json",
               "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": "echo__echo"}
    with served:
        if not lean:
            endpoint._lean = None
        answer = httpx2.post(served.url, content=raw, headers=headers, timeout=30)
    assert answer.status_code == 200
    assert answer.json()["result"]["content"] == [{"type": "text", "text": "hi"}]  # the tool ran
    lost_before = audit_writer().lost()
    flushed = flush_audit(timeout=10)
    rows = list(AuditEntry.objects.filter(api_key_id=key.pk).values_list("tool_name", "status", "call_id"))
    assert len(rows) == 1, f"the call ran but left no audit row (flush ok={flushed})"
    assert audit_writer().lost() == lost_before
    assert rows[0][2] == "\ufffd"  # (stored with the surrogate replaced)


# The `started` rows of side-effecting calls are committed together (`gateway_writes`, one
# INSERT per batch, no row isolation). One caller's JSON-RPC id holding a lone surrogate (JSON's
# "\\udc80", which /mcp accepts; it becomes the row's call_id) cannot be stored, and every other caller's `started` row in the
# same batch fails with it: their calls fail with "failed (UnicodeEncodeError)" without running.
def test_one_callers_unstorable_request_id_does_not_fail_another_callers_call(echo_team, monkeypatch):  # noqa: F811
    team, server, key, _ = echo_team
    Tool.objects.filter(server=server, name="echo").update(retry_safe=False)  # side-effecting: `started` first
    catalogue.invalidate()
    gateway = Gateway(defer_audit=True)
    principal = Principal(team_id=team.pk, user_id=key.user_id, api_key_id=key.pk)

    flush, durable = gateway_writes._kinds["audit"]

    def busy_flush(rows):  # a commit that takes a moment, so callers arriving meanwhile share the next batch
        time.sleep(0.3)
        return flush(rows)

    monkeypatch.setitem(gateway_writes._kinds, "audit", (busy_flush, durable))

    def call(message, request_id):
        return call_granted_tool(gateway, principal, types.CallToolRequestParams(
            name="echo__echo", arguments={"message": message}), request_id)

    async def scenario():
        first = asyncio.create_task(call("first", 1))  # occupies the writer
        await asyncio.sleep(0.1)
        attacker = asyncio.create_task(call("attacker", "\udc80"))  # its JSON-RPC id
        victim = asyncio.create_task(call("victim", 3))
        return await asyncio.gather(first, attacker, victim)

    first, attacker, victim = async_to_sync(scenario)()
    assert first.content[0].text == "first"
    assert attacker.content[0].text == "attacker"  # (its row stored with the surrogate replaced)
    assert victim.is_error is False and victim.content[0].text == "victim", victim.content[0].text


# A side-effecting /mcp call cancelled while its `started` row is being committed leaves two
# rows: the `started` one (committed anyway, never resolved) and a separate `error` one.
def test_cancel_during_started_commit_leaves_one_row(echo_team, monkeypatch):  # noqa: F811
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

    async def cancelled_while_starting() -> None:
        call = asyncio.create_task(gateway.call_tool(ToolInvocation(
            principal=principal, name="echo__slow", arguments={"seconds": 0}, call_id="c1")))
        await asyncio.sleep(0.2)  # inside `_Audit.start()`, awaiting the `started` row's commit
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await asyncio.sleep(0.6)  # the writer thread commits the `started` row regardless

    async_to_sync(cancelled_while_starting)()
    assert flush_audit(timeout=10)
    rows = list(AuditEntry.objects.filter(api_key_id=key.pk).order_by("id").values_list("tool_name", "status", "dispatch_id"))
    assert len(rows) == 1, rows
    assert rows[0][1] != "started", rows


# README: "A call from outside a run that ends without an answer of its own ... (the limiter or
# the upstream raised) still gets its row". A call whose catalogue snapshot load fails (the
# database is locked / unreachable for a moment) or is cancelled while loading leaves no row.
def test_a_call_whose_snapshot_load_fails_still_gets_its_row(echo_team, monkeypatch):  # noqa: F811
    team, _server, key, _ = echo_team
    gateway = Gateway(defer_audit=True)
    principal = Principal(team_id=team.pk, user_id=key.user_id, api_key_id=key.pk)
    catalogue.invalidate()

    def locked(team_id):
        raise OperationalError("database is locked")

    monkeypatch.setattr(catalogue, "load", locked)

    async def call() -> None:
        with pytest.raises(OperationalError):
            await gateway.call_tool(ToolInvocation(principal=principal, name="echo__echo",
                                                   arguments={"message": "hi"}, call_id="c1"))

    async_to_sync(call)()
    monkeypatch.undo()
    assert flush_audit(timeout=10)
    rows = list(AuditEntry.objects.filter(api_key_id=key.pk).values_list("tool_name", "status", "error"))
    assert len(rows) == 1, rows


def test_a_call_cancelled_while_its_snapshot_loads_still_gets_its_row(echo_team, monkeypatch):  # noqa: F811
    team, _server, key, _ = echo_team
    gateway = Gateway(defer_audit=True)
    principal = Principal(team_id=team.pk, user_id=key.user_id, api_key_id=key.pk)
    catalogue.invalidate()
    real_load = catalogue.load

    def slow(team_id):
        import time
        time.sleep(0.5)
        return real_load(team_id)

    monkeypatch.setattr(catalogue, "load", slow)

    async def cancelled() -> None:
        task = asyncio.create_task(gateway.call_tool(ToolInvocation(
            principal=principal, name="echo__echo", arguments={"message": "hi"}, call_id="c2")))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.6)

    async_to_sync(cancelled)()
    monkeypatch.undo()
    assert flush_audit(timeout=10)
    rows = list(AuditEntry.objects.filter(api_key_id=key.pk).values_list("tool_name", "status", "error"))
    assert len(rows) == 1, rows


# README: "a revoked key keeps working on /mcp for at most [MCP_KEY_CACHE_TTL_S] in another
# process, and stops at once in the process that revoked it". Revoking (or deleting) the key in
# the Django admin -- where keys are created -- bypasses `do_revoke_api_key`'s invalidation, so the
# key keeps working in the revoking process for the whole TTL.
def test_a_key_deleted_in_the_admin_stops_at_once_in_this_process(settings):
    settings.MCP_KEY_CACHE_TTL_S = 60
    user = get_user_model().objects.create_user("u")
    team = do_create_team("T", user)
    key, token = do_create_api_key(team.pk, "client", user)
    api_auth.forget_mcp_keys()
    assert async_to_sync(api_auth.authenticate_mcp)(token) is not None

    operator = get_user_model().objects.create_superuser("op", "op@example.com", "pw")
    browser = Client()
    browser.force_login(operator)
    answer = browser.post(f"/admin/mcpgateway/apikey/{key.pk}/delete/", {"post": "yes"})
    assert answer.status_code == 302, answer.status_code
    assert not ApiKey.objects.filter(pk=key.pk).exists()

    assert async_to_sync(api_auth.authenticate_mcp)(token) is None, "deleted in the admin, still accepted on /mcp"


def test_a_batch_write_refused_for_one_callers_data_fails_only_that_caller():
    from config.db_writer import BatchWriter

    writer = BatchWriter("edges-test")
    written = []

    def flush(items):
        if any(item == "bad" for item in items):
            raise ValueError("this row cannot be stored")
        written.extend(items)
        time.sleep(0.05)  # (so that the next callers queue up into one batch)
        return [f"ok {item}" for item in items]

    writer.register("rows", flush)

    async def callers():
        first = asyncio.ensure_future(writer.submit("rows", "first"))
        await asyncio.sleep(0.01)
        rest = [asyncio.ensure_future(writer.submit("rows", item)) for item in ("a", "bad", "b")]
        return await asyncio.gather(first, *rest, return_exceptions=True)

    first, a, bad, b = async_to_sync(callers)()
    assert (first, a, b) == ("ok first", "ok a", "ok b")
    assert isinstance(bad, ValueError)
    assert sorted(written) == ["a", "b", "first"]

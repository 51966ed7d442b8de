# Found by an outside review (2026-12-07, /mcp); failed before its fix.
"""Shared pieces for the review's tests (tests/mcpgateway/test_review_mcp_*.py; no tests here):
a team with the real SDK echo server over stdio, a key granted it, and the product's /mcp endpoint (real Gateway, real key authentication,
deferred audit) under uvicorn on a loopback port."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx2
from django.conf import settings
from django.contrib.auth import get_user_model

from mcpgateway import catalogue
from mcpgateway.actions.access import do_create_api_key, do_grant
from mcpgateway.actions.servers import do_save_server
from mcpgateway.dispatch import Gateway
from mcpgateway.downstream import build_mcp_app
from orchestrator import api_auth
from orchestrator.actions import do_create_team
from tests.conftest import start_servers
from tests.mcpgateway.test_downstream import ServedEndpoint

ROOT = Path(settings.BASE_DIR)
LEGACY = "2025-11-25"
MODERN = "2026-07-28"
ENVELOPE = {"io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {}}


def echo_team(runtime, name: str = "Review", user: str = "review", server_name: str = "echo"):
    owner = get_user_model().objects.create_user(user)
    team = do_create_team(name, owner)
    server = do_save_server(team.pk, server_name, transport="stdio", command=sys.executable,
                            args=["-m", "tests.fakes.mcp_echo_server"], cwd=str(ROOT), operator=True)
    start_servers(runtime, server)
    key, token = do_create_api_key(team.pk, "client", owner)
    do_grant(server, api_key=key)
    catalogue.invalidate()
    api_auth.forget_mcp_keys()
    return team, server, key, token, owner


def product_endpoint() -> ServedEndpoint:
    return ServedEndpoint(build_mcp_app(authenticate=api_auth.authenticate_mcp, toolbox=Gateway(defer_audit=True),
                                        allowed_hosts=["127.0.0.1", "localhost"]))


def post(url: str, token: str, body, *, version: str | None = MODERN, method: str | None = None,
         name: str | None = None, session: str | None = None, extra: dict | None = None) -> httpx2.Response:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
               "Accept": "application/json, text/event-stream"}
    if version:
        headers["MCP-Protocol-Version"] = version
    if method:
        headers["Mcp-Method"] = method
    if name:
        headers["Mcp-Name"] = name
    if session:
        headers["Mcp-Session-Id"] = session
    headers.update(extra or {})
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx2.post(url, content=data, headers=headers, timeout=30)


def modern_call(url: str, token: str, tool: str, arguments: dict, rid=1, meta: dict | None = None) -> httpx2.Response:
    params = {"name": tool, "arguments": arguments, "_meta": {**ENVELOPE, **(meta or {})}}
    return post(url, token, {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": params},
                method="tools/call", name=tool)


def modern(url: str, token: str, method: str, params: dict | None = None, rid=1, name: str | None = None,
           **kw) -> httpx2.Response:
    params = {**(params or {}), "_meta": dict(ENVELOPE)}
    return post(url, token, {"jsonrpc": "2.0", "id": rid, "method": method, "params": params},
                method=method, name=name, **kw)


def legacy_session(url: str, token: str) -> str:
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "r", "version": "1"}}}
    answer = post(url, token, init, version=None)
    assert answer.status_code == 200, answer.text
    sid = answer.headers["mcp-session-id"]
    note = post(url, token, {"jsonrpc": "2.0", "method": "notifications/initialized"}, version=LEGACY, session=sid)
    assert note.status_code in (200, 202), note.text
    return sid

"""The downstream MCP endpoint: Agentdeck serving its granted tools to any MCP client.

The endpoint runs under uvicorn on a loopback port, mounted at `/mcp` by the same path
router config/asgi.py uses, and is driven by the official SDK's `Client` over real HTTP
in both protocol eras. Agent "a" (key-a) is granted t__echo and t__add, not t__secret;
agent "b" (key-b) is granted nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.types import Receive, Scope, Send

from mcpgateway.downstream import McpEndpoint, build_mcp_app, route_mcp_path
from mcpgateway.inprocess import InProcessToolbox
from mcpgateway.types import Principal, Toolbox, ToolInvocation, ToolResult, ToolSpec

T = TypeVar("T")

KEYS = {"key-a": Principal(team_id=1, agent="a"), "key-b": Principal(team_id=1, agent="b")}
LEGACY = "2025-11-25"
MODERN = "2026-07-28"
TEST_TIMEOUT_S = 30.0
HTTP_TIMEOUT = httpx2.Timeout(10.0, read=30.0)
INSPECTOR = "@modelcontextprotocol/inspector@2.12.0"


async def authenticate(token: str) -> Principal | None:
    return KEYS.get(token)


def _echo(text: str) -> ToolResult:
    """Say it back, twice."""
    blocks = [{"type": "text", "text": text}, {"type": "text", "text": text.upper()}]
    return ToolResult(content=text, data={"mcp_content": blocks})


def _add(a: int, b: int) -> ToolResult:
    """Add two integers."""
    return ToolResult(content=str(a + b), data={"structured": {"sum": a + b}})


def toolbox() -> InProcessToolbox:
    box = InProcessToolbox(grants={"a": ["t__echo", "t__add"]})
    box.register("t__echo", _echo, input_schema={
        "type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]})
    box.register("t__add", _add, input_schema={
        "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]})
    box.register("t__secret", lambda: "the secret", description="Not for agent a.")
    return box


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    """Stands in for Django's handler behind the path router."""
    await send({"type": "http.response.start", "status": 404, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"not the MCP endpoint"})


class ServedEndpoint:
    """An endpoint under uvicorn on a free 127.0.0.1 port, routed at /mcp and /mcp/ (no lifespan, like daphne)."""

    def __init__(self, endpoint: McpEndpoint) -> None:
        self.endpoint = endpoint
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        config = uvicorn.Config(route_mcp_path(endpoint, _not_found), lifespan="off", log_level="warning")
        self._server = uvicorn.Server(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), name="mcp-endpoint", daemon=True)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._server.serve(sockets=[self._sock])

    def __enter__(self) -> ServedEndpoint:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert self._thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        return self

    def on_server_loop(self, coro: Awaitable[T]) -> T:
        """Run `coro` on the server's event loop (where the endpoint lives)."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=15)  # type: ignore[arg-type]

    def __exit__(self, *exc: object) -> None:
        try:
            self.on_server_loop(self.endpoint.aclose())
        finally:
            self._server.should_exit = True
            self._thread.join(timeout=15)
            self._sock.close()


def serve(box: Toolbox | Callable[[], Toolbox] | None = None) -> ServedEndpoint:
    return ServedEndpoint(build_mcp_app(
        authenticate=authenticate, toolbox=box if box is not None else toolbox(),
        allowed_hosts=["127.0.0.1", "localhost"]))


@pytest.fixture(scope="module")
def served() -> Iterator[ServedEndpoint]:
    with serve() as served:
        yield served


def run(coro: Awaitable[T]) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(TEST_TIMEOUT_S):
            return await coro
    return asyncio.run(bounded())


@asynccontextmanager
async def connect(url: str, key: str, mode: str = "auto") -> AsyncIterator[Client]:
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=HTTP_TIMEOUT) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode, read_timeout_seconds=10) as client:
            yield client


async def tool_names(client: Client) -> list[str]:
    return sorted(tool.name for tool in (await client.list_tools()).tools)


def text_of(result: Any) -> str:
    return " ".join(block.text for block in result.content)


def post(url: str, body: dict[str, Any], headers: dict[str, str]) -> httpx2.Response:
    """One raw POST, the way a client would send `initialize`."""
    base = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    return httpx2.post(url, content=json.dumps(body), headers={**base, **headers}, timeout=HTTP_TIMEOUT)


INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_it_lists_and_calls_the_granted_tools(served: ServedEndpoint, mode: str) -> None:
    async def scenario() -> None:
        async with connect(served.url, "key-a", mode) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            assert sorted(tools) == ["t__add", "t__echo"]
            assert tools["t__add"].input_schema["required"] == ["a", "b"]
            assert tools["t__echo"].input_schema["properties"] == {"text": {"type": "string"}}
            assert tools["t__echo"].description == "Say it back, twice."

            added = await client.call_tool("t__add", {"a": 2, "b": 3})
            assert (added.is_error, text_of(added), added.structured_content) == (False, "5", {"sum": 5})
            echoed = await client.call_tool("t__echo", {"text": "hi"})
            assert (echoed.is_error, [block.text for block in echoed.content]) == (False, ["hi", "HI"])
            assert echoed.structured_content is None

    run(scenario())


def test_it_speaks_both_protocol_eras(served: ServedEndpoint) -> None:
    async def scenario() -> None:
        async with connect(served.url, "key-a", "legacy") as legacy, connect(served.url, "key-a") as modern:
            assert (legacy.protocol_version, modern.protocol_version) == (LEGACY, MODERN)
            assert await tool_names(legacy) == await tool_names(modern) == ["t__add", "t__echo"]

    run(scenario())


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_it_answers_an_ungranted_tool_with_an_error_result(served: ServedEndpoint, mode: str) -> None:
    async def scenario() -> None:
        async with connect(served.url, "key-a", mode) as client:
            result = await client.call_tool("t__secret", {})
            assert result.is_error and "not allowed" in text_of(result)
            assert "the secret" not in text_of(result)
            assert (await client.call_tool("t__add", {"a": 1, "b": 1})).structured_content == {"sum": 2}

    run(scenario())


def test_it_lists_no_tools_for_a_key_without_grants(served: ServedEndpoint) -> None:
    async def scenario() -> None:
        async with connect(served.url, "key-b", "legacy") as legacy, connect(served.url, "key-b") as modern:
            assert await tool_names(legacy) == await tool_names(modern) == []
            assert (await modern.call_tool("t__echo", {"text": "x"})).is_error

    run(scenario())


def test_it_passes_a_tools_own_failure_back_as_an_error_result(served: ServedEndpoint) -> None:
    async def scenario() -> None:
        async with connect(served.url, "key-a") as client:
            result = await client.call_tool("t__add", {"a": 1})
            assert result.is_error and "TypeError" in text_of(result)

    run(scenario())


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic a2V5LWE="}])
def test_it_refuses_a_request_without_a_valid_key(served: ServedEndpoint, headers: dict[str, str]) -> None:
    response = post(served.url, INITIALIZE, headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["error"] in ("unauthorized", "invalid_token")


def test_it_keeps_concurrent_callers_apart(served: ServedEndpoint) -> None:
    async def caller(key: str, mode: str) -> list[tuple[list[str], bool]]:
        seen = []
        async with connect(served.url, key, mode) as client:
            for i in range(10):
                names = await tool_names(client)
                called = await client.call_tool("t__echo", {"text": f"{key}-{i}"})
                seen.append((names, called.is_error))
        return seen

    async def scenario() -> list[list[tuple[list[str], bool]]]:
        return await asyncio.gather(*(caller(key, mode) for key in KEYS for mode in ("legacy", "auto")))

    a_legacy, a_modern, b_legacy, b_modern = run(scenario())
    assert a_legacy == a_modern == [(["t__add", "t__echo"], False)] * 10
    assert b_legacy == b_modern == [([], True)] * 10


def test_it_binds_a_legacy_session_to_the_key_that_opened_it(served: ServedEndpoint) -> None:
    opened = post(served.url, INITIALIZE, {"Authorization": "Bearer key-a"})
    assert opened.status_code == 200
    session = {"Mcp-Session-Id": opened.headers["mcp-session-id"], "MCP-Protocol-Version": LEGACY}
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}

    assert post(served.url, listing, {**session, "Authorization": "Bearer key-b"}).status_code == 404
    own = post(served.url, listing, {**session, "Authorization": "Bearer key-a"})
    assert own.status_code == 200
    assert [tool["name"] for tool in own.json()["result"]["tools"]] == ["t__add", "t__echo"]


def test_it_serves_a_legacy_sse_stream_and_ends_the_session_on_delete(served: ServedEndpoint) -> None:
    key = {"Authorization": "Bearer key-a"}
    opened = post(served.url, INITIALIZE, key)
    session = {**key, "Mcp-Session-Id": opened.headers["mcp-session-id"], "MCP-Protocol-Version": LEGACY}
    initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    assert post(served.url, initialized, session).status_code == 202

    sse = {**session, "Accept": "text/event-stream"}
    with httpx2.stream("GET", served.url, headers=sse, timeout=HTTP_TIMEOUT) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")

    assert httpx2.delete(served.url, headers=session, timeout=HTTP_TIMEOUT).status_code == 200
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    assert post(served.url, listing, session).status_code == 404


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example"])
def test_it_refuses_a_foreign_host_header(served: ServedEndpoint, host: str) -> None:
    response = post(served.url, INITIALIZE, {"Authorization": "Bearer key-a", "Host": host})
    assert response.status_code == 421


def test_it_accepts_an_allowed_host_with_any_port(served: ServedEndpoint) -> None:
    response = post(served.url, INITIALIZE, {"Authorization": "Bearer key-a", "Host": "localhost:1234"})
    assert response.status_code == 200


def test_it_refuses_a_foreign_browser_origin(served: ServedEndpoint) -> None:
    foreign = post(served.url, INITIALIZE, {"Authorization": "Bearer key-a", "Origin": "http://evil.example"})
    assert foreign.status_code == 403
    local = post(served.url, INITIALIZE, {"Authorization": "Bearer key-a", "Origin": f"http://localhost:{served.port}"})
    assert local.status_code == 200


@pytest.mark.parametrize("path", ["/mcp", "/mcp/"])
def test_it_serves_the_path_with_and_without_a_slash(served: ServedEndpoint, path: str) -> None:
    url = f"http://127.0.0.1:{served.port}{path}"
    assert post(url, INITIALIZE, {"Authorization": "Bearer key-a"}).status_code == 200

    async def scenario() -> list[str]:
        async with connect(url, "key-a") as client:
            return await tool_names(client)

    assert run(scenario()) == ["t__add", "t__echo"]
    assert post(f"http://127.0.0.1:{served.port}/mcpx", INITIALIZE, {}).status_code == 404


class _BrokenToolbox:
    """A toolbox whose calls blow up, as a gateway bug would."""

    async def list_tools(self, principal: Principal) -> list[ToolSpec]:
        return [ToolSpec("t__broken", "Always fails.", {"type": "object", "properties": {}})]

    async def call_tool(self, invocation: ToolInvocation) -> ToolResult:
        raise RuntimeError(f"database password is hunter2 (call {invocation.call_id})")


def test_it_turns_a_toolbox_crash_into_a_short_error_result() -> None:
    async def scenario() -> Any:
        async with connect(served.url, "key-a") as client:
            assert await tool_names(client) == ["t__broken"]
            return await client.call_tool("t__broken", {})

    with serve(_BrokenToolbox) as served:  # a factory, called per request
        result = run(scenario())
    assert result.is_error and "RuntimeError" in text_of(result)
    assert "hunter2" not in text_of(result)


def test_it_passes_the_json_rpc_request_id_as_call_id() -> None:
    invocations: list[ToolInvocation] = []

    class Recording(InProcessToolbox):
        async def call_tool(self, invocation: ToolInvocation) -> ToolResult:
            invocations.append(invocation)
            return await super().call_tool(invocation)

    box = Recording(grants={"a": ["t__add"]})
    box.register("t__add", _add)
    with serve(box) as served:
        response = post(served.url, {"jsonrpc": "2.0", "id": "call-77", "method": "tools/call",
                                     "params": {"name": "t__add", "arguments": {"a": 1, "b": 2},
                                                "_meta": {"io.modelcontextprotocol/protocolVersion": MODERN,
                                                          "io.modelcontextprotocol/clientCapabilities": {}}}},
                        {"Authorization": "Bearer key-a", "MCP-Protocol-Version": MODERN,
                         "Mcp-Method": "tools/call", "Mcp-Name": "t__add"})
    assert response.status_code == 200, response.text
    assert response.json()["result"]["structuredContent"] == {"sum": 3}
    assert [(i.principal, i.name, i.arguments, i.call_id) for i in invocations] == [
        (KEYS["key-a"], "t__add", {"a": 1, "b": 2}, "call-77")]


def test_it_starts_the_session_manager_on_first_use_and_stops_it_on_aclose() -> None:
    with serve() as served:
        assert not served.endpoint.running
        assert post(served.url, INITIALIZE, {"Authorization": "Bearer key-a"}).status_code == 200
        assert served.endpoint.running
        served.on_server_loop(served.endpoint.aclose())
        assert not served.endpoint.running
        assert post(served.url, INITIALIZE, {"Authorization": "Bearer key-a"}).status_code == 503


@pytest.mark.slow
def test_it_serves_the_mcp_inspector_cli(served: ServedEndpoint, tmp_path: Any) -> None:
    if shutil.which("npx") is None:
        pytest.skip("npx is not installed")
    command = ["npx", "-y", INSPECTOR, "--cli", served.url, "--transport", "http",
               "--header", "Authorization: Bearer key-a", "--method", "tools/list"]
    env = {**os.environ, "HOME": str(tmp_path), "npm_config_cache": str(tmp_path / "npm")}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env, check=False)
    except subprocess.TimeoutExpired:
        pytest.skip(f"npx could not fetch and run {INSPECTOR} within 60 s")
    if done.returncode != 0 and any(sign in done.stderr for sign in ("ENOTFOUND", "EAI_AGAIN", "E404", "ETIMEDOUT", "ECONNREFUSED")):
        pytest.skip(f"npx could not fetch {INSPECTOR}: {done.stderr.strip()[-300:]}")
    assert done.returncode == 0, done.stderr
    assert sorted(tool["name"] for tool in json.loads(done.stdout)["tools"]) == ["t__add", "t__echo"]

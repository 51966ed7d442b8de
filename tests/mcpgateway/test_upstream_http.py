"""The supervisor against the SDK echo server served over HTTP by uvicorn on a loopback
port inside the test: streamable HTTP (with an Authorization header the server must see)
and the older HTTP+SSE transport."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvicorn

from mcpgateway.upstream import Discovery, Health, Supervisor, UpstreamConfig, UpstreamUnavailable
from tests.fakes.mcp_echo_server import MUTATED_PREFIX, build_server

# The servers listen on loopback, which the outbound guard refuses unless the instance allows it.
pytestmark = pytest.mark.usefixtures("outbound_allows_loopback")


def free_socket(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


@asynccontextmanager
async def serving(app: Any, port: int = 0) -> AsyncIterator[int]:
    """Serve an ASGI app on 127.0.0.1 in this event loop; yields the port."""
    sock = free_socket(port)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await task
        sock.close()


def echo_description(discovery: Discovery | None) -> str:
    assert discovery is not None
    return next(tool.description for tool in discovery.tools if tool.name == "echo")


def test_it_calls_a_streamable_http_upstream_with_headers() -> None:
    async def scenario() -> None:
        app = build_server().streamable_http_app(json_response=True)
        async with serving(app) as port:
            mutated = asyncio.Event()

            async def on_discovery(name: str, discovery: Discovery) -> None:
                if echo_description(discovery).startswith(MUTATED_PREFIX):
                    mutated.set()

            async with Supervisor(on_discovery=on_discovery) as sup:
                await sup.add(UpstreamConfig(
                    name="remote",
                    transport="http",
                    url=f"http://127.0.0.1:{port}/mcp",
                    headers={"Authorization": "Bearer s3cret"},
                ))
                health = await sup.wait_up("remote", timeout=15)
                assert health.pid is None

                discovery = sup.discovery("remote")
                assert discovery is not None and discovery.protocol_version == "2026-07-28"
                seen = await sup.call_tool("remote", "header", {"name": "authorization"})
                assert seen.text() == "Bearer s3cret"
                added = await sup.call_tool("remote", "add", {"a": 20, "b": 22})
                assert added.structured == {"result": 42}

                await sup.call_tool("remote", "mutate", {})
                async with asyncio.timeout(10):
                    await mutated.wait()
                assert echo_description(sup.discovery("remote")).startswith(MUTATED_PREFIX)

    asyncio.run(scenario())


def test_it_marks_an_http_upstream_down_and_reconnects_when_it_returns() -> None:
    async def scenario() -> None:
        down = asyncio.Event()

        async def on_health(name: str, health: Health) -> None:
            if health.state == "down":
                down.set()

        async with Supervisor(
            on_health=on_health, health_interval_s=0.2, backoff_initial_s=0.1, backoff_max_s=0.5
        ) as sup:
            async with serving(build_server().streamable_http_app(json_response=True)) as port:
                await sup.add(UpstreamConfig(name="remote", transport="http", url=f"http://127.0.0.1:{port}/mcp"))
                await sup.wait_up("remote", timeout=15)
            async with asyncio.timeout(10):
                await down.wait()
            try:
                await sup.call_tool("remote", "echo", {"message": "x"})
            except UpstreamUnavailable:
                pass
            else:
                raise AssertionError("a down upstream answered")

            async with serving(build_server().streamable_http_app(json_response=True), port):
                back = await sup.wait_up("remote", timeout=15)
                assert back.restarts >= 1
                result = await sup.call_tool("remote", "echo", {"message": "back"})
                assert result.text() == "back"

    asyncio.run(scenario())


def test_it_calls_an_sse_upstream() -> None:
    async def scenario() -> None:
        async with serving(build_server().sse_app()) as port, Supervisor() as sup:
            await sup.add(UpstreamConfig(
                name="legacy", transport="sse", url=f"http://127.0.0.1:{port}/sse",
                headers={"Authorization": "Bearer old"},
            ))
            await sup.wait_up("legacy", timeout=15)
            seen = await sup.call_tool("legacy", "header", {"name": "authorization"})
            assert seen.text() == "Bearer old"
            result = await sup.call_tool("legacy", "echo", {"message": "over sse"})
            assert result.text() == "over sse"

    asyncio.run(scenario())

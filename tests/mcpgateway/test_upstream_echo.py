"""The supervisor against the SDK echo server over stdio: discovery, calls, errors, list
changes, timeouts, a killed process coming back, and concurrent calls from many tasks."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mcpgateway.upstream import (
    Discovery,
    Health,
    Supervisor,
    UpstreamConfig,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from tests.fakes.mcp_echo_server import ECHO_DESCRIPTION, MUTATED_PREFIX

ROOT = Path(__file__).resolve().parents[2]
ECHO_SERVER = str(ROOT / "tests" / "fakes" / "mcp_echo_server.py")


def echo_config(name: str = "echo", **overrides: Any) -> UpstreamConfig:
    fields: dict[str, Any] = {"command": sys.executable, "args": (ECHO_SERVER,), "cwd": str(ROOT)}
    fields.update(overrides)
    return UpstreamConfig(name=name, transport="stdio", **fields)


class Recorder:
    """Collects on_health / on_discovery callbacks and lets a test wait for one."""

    def __init__(self) -> None:
        self.health: list[tuple[str, Health]] = []
        self.discoveries: list[tuple[str, Discovery]] = []
        self._pulse = asyncio.Event()

    async def on_health(self, name: str, health: Health) -> None:
        self.health.append((name, health))
        self._wake()

    async def on_discovery(self, name: str, discovery: Discovery) -> None:
        self.discoveries.append((name, discovery))
        self._wake()

    def _wake(self) -> None:
        pulse, self._pulse = self._pulse, asyncio.Event()
        pulse.set()

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(10):
            while not condition():
                await self._pulse.wait()

    def states(self, name: str) -> list[str]:
        return [health.state for server, health in self.health if server == name]


def echo_description(discovery: Discovery) -> str:
    return next(tool.description for tool in discovery.tools if tool.name == "echo")


def test_it_discovers_and_calls_the_echo_server(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mcpgateway.upstream.stderr")

    async def scenario() -> None:
        recorder = Recorder()
        async with Supervisor(on_discovery=recorder.on_discovery, on_health=recorder.on_health) as sup:
            await sup.add(echo_config())
            health = await sup.wait_up("echo", timeout=15)
            assert health.state == "up" and health.restarts == 0 and health.pid

            discovery = sup.discovery("echo")
            assert discovery is not None
            assert {"echo", "add", "fail", "slow", "mutate"} <= {tool.name for tool in discovery.tools}
            add = next(tool for tool in discovery.tools if tool.name == "add")
            assert add.input_schema["required"] == ["a", "b"]
            assert add.output_schema is not None
            assert [resource["uri"] for resource in discovery.resources] == ["echo://readme"]
            assert [prompt["name"] for prompt in discovery.prompts] == ["greet"]
            assert discovery.server_info["name"] == "echo-server"
            assert recorder.discoveries[0][1] == discovery

            echoed = await sup.call_tool("echo", "echo", {"message": "hello"})
            assert echoed.is_error is False and echoed.text() == "hello"
            assert echoed.content == [{"type": "text", "text": "hello"}]

            added = await sup.call_tool("echo", "add", {"a": 2, "b": 40})
            assert added.structured == {"result": 42} and added.text() == "42"

            failed = await sup.call_tool("echo", "fail", {"message": "boom"})
            assert failed.is_error is True and "boom" in failed.text()

            unknown_tool = await sup.call_tool("echo", "no_such_tool", {})
            assert unknown_tool.is_error is True

            pid = await sup.call_tool("echo", "pid", {})
            assert pid.structured == {"result": health.pid}
        assert recorder.states("echo") == ["starting", "up", "stopped"]

    asyncio.run(scenario())
    assert any("echo server starting" in record.getMessage() for record in caplog.records)


def test_it_rediscovers_when_the_tool_list_changes() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        async with Supervisor(on_discovery=recorder.on_discovery) as sup:
            await sup.add(echo_config())
            await sup.wait_up("echo", timeout=15)
            assert echo_description(recorder.discoveries[-1][1]) == ECHO_DESCRIPTION

            await sup.call_tool("echo", "mutate", {})
            await recorder.wait_for(
                lambda: echo_description(recorder.discoveries[-1][1]).startswith(MUTATED_PREFIX)
            )
            discovery = sup.discovery("echo")
            assert discovery is not None
            assert echo_description(discovery) == f"{MUTATED_PREFIX}1)."

    asyncio.run(scenario())


def test_it_times_out_a_call_and_keeps_the_session() -> None:
    async def scenario() -> None:
        async with Supervisor() as sup:
            await sup.add(echo_config(call_timeout_s=5))
            await sup.wait_up("echo", timeout=15)

            started = time.monotonic()
            with pytest.raises(UpstreamTimeout):
                await sup.call_tool("echo", "slow", {"seconds": 10}, timeout_s=0.3)
            assert time.monotonic() - started < 2

            result = await sup.call_tool("echo", "echo", {"message": "still here"})
            assert result.text() == "still here"
            assert sup.health("echo").state == "up"

    asyncio.run(scenario())


def test_it_refuses_calls_to_unknown_or_down_servers_at_once() -> None:
    async def scenario() -> None:
        async with Supervisor(backoff_initial_s=5) as sup:
            with pytest.raises(UpstreamUnavailable):
                await sup.call_tool("nope", "echo", {"message": "x"})

            await sup.add(UpstreamConfig(name="broken", transport="stdio", command="/nonexistent/mcp-server"))
            with pytest.raises(UpstreamTimeout):
                await sup.wait_up("broken", timeout=1)
            health = sup.health("broken")
            assert health.state == "down" and "nonexistent" in health.error

            started = time.monotonic()
            with pytest.raises(UpstreamUnavailable):
                await sup.call_tool("broken", "echo", {"message": "x"})
            assert time.monotonic() - started < 0.1

            await sup.remove("broken")
            assert sup.names() == []

    asyncio.run(scenario())


def test_it_restarts_a_killed_server_while_another_keeps_serving() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        async with Supervisor(
            on_discovery=recorder.on_discovery, on_health=recorder.on_health, backoff_initial_s=0.2
        ) as sup:
            await sup.add(echo_config("victim"))
            await sup.add(echo_config("bystander"))
            victim = await sup.wait_up("victim", timeout=15)
            await sup.wait_up("bystander", timeout=15)
            assert victim.pid is not None

            os.kill(victim.pid, signal.SIGKILL)
            await recorder.wait_for(lambda: "down" in recorder.states("victim"))
            assert "down" in recorder.states("victim")
            with pytest.raises(UpstreamUnavailable):
                await sup.call_tool("victim", "echo", {"message": "x"})
            served = await sup.call_tool("bystander", "echo", {"message": "meanwhile"})
            assert served.text() == "meanwhile"

            back = await sup.wait_up("victim", timeout=15)
            assert back.restarts == 1 and back.pid not in (None, victim.pid)
            assert recorder.states("victim") == ["starting", "up", "down", "up"]
            assert [name for name, _ in recorder.discoveries].count("victim") == 2
            result = await sup.call_tool("victim", "pid", {})
            assert result.structured == {"result": back.pid}
            assert recorder.states("bystander") == ["starting", "up"]

    asyncio.run(scenario())


def test_it_serves_concurrent_calls_from_many_tasks() -> None:
    async def scenario() -> None:
        async with Supervisor() as sup:
            await sup.add(echo_config())
            await sup.wait_up("echo", timeout=15)

            async def call(i: int) -> str:
                result = await sup.call_tool("echo", "add", {"a": i, "b": 1000})
                return result.text()

            tasks = [asyncio.create_task(call(i)) for i in range(64)]
            assert await asyncio.gather(*tasks) == [str(i + 1000) for i in range(64)]

    asyncio.run(scenario())

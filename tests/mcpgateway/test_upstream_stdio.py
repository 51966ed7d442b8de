"""The stdio channel's short path for tool calls (`mcpgateway/upstream/stdio.py`), against real
servers: the SDK echo server (2026-07-28 era) and `server-everything` from npm (2025-11-25).

Each answer through the short path is compared with the same call through the SDK's
`Client` (taken when the caller carries a trace to continue), so the two paths cannot drift
apart; then the short path's own failure cases: a timeout, a server killed mid-call, many
calls at once, and a server whose process group will not stop without SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from mcpgateway.upstream import Supervisor, UpstreamConfig, UpstreamTimeout, UpstreamUnavailable
from mcpgateway.upstream.stdio import ID_PREFIX, ChannelClosed, StdioChannel

ROOT = Path(__file__).resolve().parents[2]
ECHO_SERVER = str(ROOT / "tests" / "fakes" / "mcp_echo_server.py")
# Any well-formed W3C traceparent: its presence sends a call through the SDK's client.
TRACED = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}


def echo_config(name: str = "echo", command: str = sys.executable, args: tuple[str, ...] = (ECHO_SERVER,)) -> UpstreamConfig:
    return UpstreamConfig(name=name, transport="stdio", command=command, args=args, cwd=str(ROOT))


def test_the_short_path_answers_exactly_as_the_sdk_client_does_in_both_eras() -> None:
    calls = {
        "echo": [("echo", {"message": "hello"}), ("add", {"a": 2, "b": 40}), ("fail", {"message": "boom"}),
                 ("no_such_tool", {}), ("add", {"a": "two"}), ("echo", {}), ("add", {"a": float("nan"), "b": 1})],
        "everything": [("echo", {"message": "hi there"}), ("no_such_tool", {}), ("echo", {})],
    }

    async def scenario() -> None:
        async with Supervisor() as sup:
            await sup.add(echo_config())
            await sup.add(UpstreamConfig(name="everything", transport="stdio", command="npx",
                                         args=("-y", "@modelcontextprotocol/server-everything"), cwd=str(ROOT)))
            await sup.wait_up("echo", timeout=15)
            await sup.wait_up("everything", timeout=30)
            assert sup.discovery("echo").protocol_version == "2026-07-28"
            assert sup.discovery("everything").protocol_version == "2025-11-25"
            for server, pairs in calls.items():
                for tool, arguments in pairs:
                    short = await sup.call_tool(server, tool, arguments)
                    through_sdk = await sup.call_tool(server, tool, arguments, meta=dict(TRACED))
                    assert short == through_sdk, (server, tool, arguments)
            assert (await sup.call_tool("echo", "add", {"a": 2, "b": 40})).structured == {"result": 42}
            assert (await sup.call_tool("echo", "fail", {"message": "boom"})).is_error is True

            # Which path each took, as the server saw it: our string ids, the SDK's numbers;
            # the 2026-era envelope the short path stamps is accepted.
            short = (await sup.call_tool("echo", "request_id", {})).text()
            through_sdk = (await sup.call_tool("echo", "request_id", {}, meta=dict(TRACED))).text()
            assert short.startswith(ID_PREFIX) and short.endswith(" 2026-07-28"), short
            assert through_sdk.split()[0].isdigit(), through_sdk
            # The 2026-era envelope the short path stamps is the one the SDK's session stamps.
            envelope = json.loads((await sup.call_tool("echo", "envelope", {})).text())
            assert envelope == json.loads((await sup.call_tool("echo", "envelope", {}, meta=dict(TRACED))).text())
            assert {"io.modelcontextprotocol/protocolVersion", "io.modelcontextprotocol/clientInfo",
                    "io.modelcontextprotocol/clientCapabilities"} <= set(envelope), envelope

    asyncio.run(scenario())


def test_a_timed_out_short_call_is_cancelled_and_both_paths_go_on() -> None:
    async def scenario() -> None:
        async with Supervisor() as sup:
            await sup.add(echo_config())
            await sup.wait_up("echo", timeout=15)
            started = time.monotonic()
            with pytest.raises(UpstreamTimeout):
                await sup.call_tool("echo", "slow", {"seconds": 0.8}, timeout_s=0.3)
            assert time.monotonic() - started < 0.8
            assert (await sup.call_tool("echo", "echo", {"message": "next"})).text() == "next"
            async with asyncio.timeout(5):  # the courtesy notifications/cancelled reached the server
                while (await sup.call_tool("echo", "cancellations", {})).text() != "1":
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.8)  # past the moment an uncancelled answer would have come
            assert (await sup.call_tool("echo", "echo", {"message": "sdk"}, meta=dict(TRACED))).text() == "sdk"
            assert (await sup.call_tool("echo", "echo", {"message": "short"})).text() == "short"
            assert sup.health("echo").restarts == 0

    asyncio.run(scenario())


def test_a_server_killed_mid_call_fails_the_waiting_short_calls_at_once() -> None:
    async def scenario() -> None:
        async with Supervisor() as sup:
            await sup.add(echo_config())
            health = await sup.wait_up("echo", timeout=15)
            waiting = [asyncio.create_task(sup.call_tool("echo", "slow", {"seconds": 30})) for _ in range(3)]
            await asyncio.sleep(0.3)
            started = time.monotonic()
            os.kill(health.pid, signal.SIGKILL)
            for call in waiting:
                with pytest.raises(UpstreamUnavailable):
                    await call
            assert time.monotonic() - started < 3
            async with asyncio.timeout(15):  # the supervisor notices and starts it again
                while sup.health("echo").restarts == 0 or sup.health("echo").state != "up":
                    await asyncio.sleep(0.05)
            assert sup.health("echo").pid != health.pid
            assert (await sup.call_tool("echo", "echo", {"message": "again"})).text() == "again"

    asyncio.run(scenario())


def test_many_concurrent_short_calls_each_get_their_own_answer() -> None:
    async def scenario() -> None:
        async with Supervisor() as sup:
            await sup.add(echo_config())
            await sup.wait_up("echo", timeout=15)
            results = await asyncio.gather(*(
                sup.call_tool("echo", "echo", {"message": f"m{i}"}, meta=dict(TRACED) if i % 10 == 0 else None)
                for i in range(300)))
            assert [result.text() for result in results] == [f"m{i}" for i in range(300)]

    asyncio.run(scenario())


def group_members(group: int) -> list[int]:
    """Live (not zombie) processes in a process group, from /proc."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == group and fields[0] != "Z":
                members.append(int(entry))
    return members


def test_a_server_group_that_ignores_stdin_close_and_sigterm_is_killed() -> None:
    # sh ignores SIGTERM (and so does the `sleep` it runs once the echo server has exited on
    # stdin's close): only SIGKILL ends the group.
    stubborn = echo_config("stubborn", command="sh",
                           args=("-c", f"trap '' TERM; {sys.executable} {ECHO_SERVER}; sleep 60"))

    async def scenario() -> None:
        async with Supervisor() as sup:
            await sup.add(stubborn)
            health = await sup.wait_up("stubborn", timeout=15)
            assert len(group_members(health.pid)) == 2  # sh and the echo server
            assert (await sup.call_tool("stubborn", "echo", {"message": "hi"})).text() == "hi"
            started = time.monotonic()
            await sup.remove("stubborn")
            took = time.monotonic() - started
            async with asyncio.timeout(2):  # SIGKILL delivered; the members vanish
                while group_members(health.pid):
                    await asyncio.sleep(0.05)
            assert 2.0 <= took < 10, took  # the grace period, then SIGTERM's wait, then SIGKILL

    asyncio.run(scenario())


def test_a_server_that_stops_reading_stdin_cannot_hold_a_call_past_its_deadline() -> None:
    # Never reads stdin: a big request fills the pipe, and the write waits for room.
    deaf = StdioChannel("deaf", sys.executable, ["-c", "import time; time.sleep(3)"])

    async def scenario() -> None:
        async with deaf:
            for _ in range(2):
                started = time.monotonic()
                with pytest.raises(TimeoutError):
                    await deaf.request("tools/call", {"name": "echo", "arguments": {"message": "x" * 300_000}}, 0.5)
                assert time.monotonic() - started < 1.5
            async with asyncio.timeout(5):
                await deaf.closed.wait()  # it exited
            started = time.monotonic()
            with pytest.raises(ChannelClosed):
                await deaf.request("tools/call", {"name": "echo", "arguments": {}}, 5)
            assert time.monotonic() - started < 0.5

    asyncio.run(scenario())


# Answers every request line with, in one write: a line too deeply nested to decode that
# carries our id mark, a notification whose text mentions the mark (not an answer: it goes
# to the SDK session), then the answer itself, ending in CRLF; the second answer carries
# bytes that are not UTF-8.
CRAFTED = r"""
import json, sys
out = sys.stdout.buffer
for n, line in enumerate(sys.stdin.buffer):
    request = json.loads(line)
    deep = b'{"id":"agw-0","x":' + b'[' * 100000 + b']' * 100000 + b'}\n'
    note = json.dumps({"jsonrpc": "2.0", "method": "notifications/message",
                       "params": {"level": "info", "data": 'see "agw-1"'}}).encode() + b'\n'
    text = b'caf\xe9' if n else b'ok'
    answer = b'{"jsonrpc":"2.0","id":"' + request["id"].encode() + b'","result":{"text":"' + text + b'"}}\r\n'
    out.write(deep + note + answer)
    out.flush()
"""


def test_answers_are_matched_by_id_whatever_else_the_line_or_chunk_holds() -> None:
    crafted = StdioChannel("crafted", sys.executable, ["-c", CRAFTED])

    async def scenario() -> None:
        async with crafted as (read, _write):
            first = await crafted.request("tools/call", {"name": "x"}, 5)
            assert first["result"] == {"text": "ok"}
            second = await crafted.request("tools/call", {"name": "x"}, 5)
            assert second["result"] == {"text": "caf\ufffd"}
            notes = []
            async with asyncio.timeout(5):
                while len(notes) < 2:
                    message = await read.receive()
                    if not isinstance(message, Exception):
                        notes.append(message.message)
            assert all(note.method == "notifications/message" and "agw-1" in note.params["data"] for note in notes)

    asyncio.run(scenario())


DEEP_SERVER = r'''
import json, sys
def nest(depth):
    value = 1
    for _ in range(depth):
        value = [value]
    return value
for line in sys.stdin:
    message = json.loads(line) if line.strip() else {}
    if "id" not in message or "method" not in message:
        continue
    method = message["method"]
    result = {"initialize": {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                             "serverInfo": {"name": "deep", "version": "1"}},
              "tools/list": {"tools": [{"name": "deep", "inputSchema": {"type": "object"}}]},
              "tools/call": {"content": [{"type": "text", "text": "deep"}], "structuredContent": {"a": nest(300)}},
              "ping": {}}.get(method)
    reply = {"jsonrpc": "2.0", "id": message["id"]}
    reply.update({"result": result} if result is not None else {"error": {"code": -32601, "message": "no"}})
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()
'''


def test_a_result_too_deep_to_serialise_is_an_error_result(tmp_path) -> None:
    """The result surface's check dumps the result as well as validating it: a result nested
    deeper than pydantic can serialise is refused there, and comes back as an error result (so
    dispatch audits it like any other invalid answer). The SDK's own transport drops such a
    line unread, and its caller waits for the deadline."""
    script = tmp_path / "deep_server.py"
    script.write_text(DEEP_SERVER)

    async def scenario() -> None:
        async with Supervisor() as supervisor:
            await supervisor.add(echo_config("deep", args=(str(script),)))
            await supervisor.wait_up("deep", timeout=15)
            started = time.monotonic()
            result = await supervisor.call_tool("deep", "deep", {}, timeout_s=10)
            assert result.is_error and "cannot be serialised" in result.text(), result
            assert time.monotonic() - started < 5  # refused on arrival, not by the deadline

    asyncio.run(scenario())

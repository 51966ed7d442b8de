"""A small MCP server written with the SDK's `MCPServer`, for the upstream supervisor tests.

Run as a script it serves stdio (`python tests/fakes/mcp_echo_server.py`); a test that
needs streamable HTTP builds the same server with `build_server()` and serves
`server.streamable_http_app(...)` itself.

Tools: `echo`, `add`, `fail` (an error result), `slow` (sleeps; `cancellations` counts
the calls the client cancelled), `mutate` (changes the description of `echo` and announces
`tools/list_changed`), `header` (a request header the server saw, HTTP only), `request_id`
(the JSON-RPC id it saw), `envelope` (the `_meta` it received) and `pid`. One resource
(`echo://readme`) and one prompt (`greet`).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

ECHO_DESCRIPTION = "Echo a message back."
MUTATED_PREFIX = "Echo a message back (revision "


def build_server() -> MCPServer:
    """The echo server with every tool, resource and prompt registered."""
    server = MCPServer("echo-server", version="1.0.0", log_level="WARNING")
    revision = 0

    def echo(message: str) -> str:
        return message

    server.add_tool(echo, name="echo", description=ECHO_DESCRIPTION)

    @server.tool(description="Add two integers.")
    def add(a: int, b: int) -> int:
        return a + b

    @server.tool(description="Always fails with the given message.")
    def fail(message: str) -> str:
        raise ToolError(message)

    cancelled = 0

    @server.tool(description="Sleep for the given number of seconds, then answer.")
    async def slow(seconds: float) -> str:
        nonlocal cancelled
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:  # the client sent notifications/cancelled
            cancelled += 1
            raise
        return f"slept {seconds}"

    @server.tool(description="How many `slow` calls were cancelled by the client so far.")
    def cancellations() -> int:
        return cancelled

    @server.tool(description="Change the description of echo and announce tools/list_changed.")
    async def mutate(ctx: Context) -> str:
        nonlocal revision
        revision += 1
        description = f"{MUTATED_PREFIX}{revision})."
        server.remove_tool("echo")
        server.add_tool(echo, name="echo", description=description)
        # 2026-07-28 clients hear it through subscriptions/listen, older ones as a plain
        # notification; each path drops the copy that is not meant for its era.
        await ctx.notify_tools_changed()
        await ctx.session.send_tool_list_changed()
        return description

    @server.tool(description="The value of a request header as the server saw it (HTTP only).")
    def header(name: str, ctx: Context) -> str:
        headers = ctx.headers or {}
        return headers.get(name.lower(), "") or headers.get(name, "")

    @server.tool(description="The JSON-RPC id of this request and the protocol version, as the server saw them.")
    def request_id(ctx: Context) -> str:
        return f"{ctx.request_id} {ctx.protocol_version}"

    @server.tool(description="The request's `_meta` as the server received it, as JSON (no trace context).")
    def envelope(ctx: Context) -> str:
        meta = dict((ctx.request_context.params or {}).get("_meta") or {})
        meta.pop("traceparent", None)
        return json.dumps(meta, sort_keys=True)

    @server.tool(description="The server's process id.")
    def pid() -> int:
        return os.getpid()

    @server.resource("echo://readme", name="readme", mime_type="text/plain")
    def readme() -> str:
        return "The echo server repeats what you say."

    @server.prompt(description="Greet someone by name.")
    def greet(name: str) -> str:
        return f"Say hello to {name}."

    return server


if __name__ == "__main__":
    print("echo server starting", file=sys.stderr, flush=True)
    build_server().run("stdio")

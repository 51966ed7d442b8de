"""A stdio MCP server that records every tool call, with its `_meta`, to a file.

`python -m tests.fakes.mcp_recording_server <log path>`. Each call appends one JSON line
(`{"tool", "arguments", "meta", "pid"}`, fsynced) *before* it does its work, so a test can
see a call in flight and kill its caller then. Tools: `lookup` (read-only: `readOnlyHint`),
`send` (a side effect, no hints); both answer with what they did, after `seconds` while a
file `<log path>.hold` exists (a test removes it to let later calls through at once).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import ToolAnnotations


def build_server(log_path: str) -> MCPServer:
    server = MCPServer("recording-server", version="1.0.0", log_level="WARNING")

    def record(tool: str, arguments: dict[str, Any], ctx: Context) -> None:
        meta = ctx.request_context.meta
        line = {"tool": tool, "arguments": arguments, "meta": meta if isinstance(meta, dict) else None, "pid": os.getpid()}
        with open(log_path, "a") as log:
            log.write(json.dumps(line) + "\n")
            log.flush()
            os.fsync(log.fileno())

    hold_file = Path(f"{log_path}.hold")

    async def hold(seconds: float) -> None:
        if await asyncio.to_thread(hold_file.exists):
            await asyncio.sleep(seconds)

    @server.tool(description="Look something up (reads only).", annotations=ToolAnnotations(readOnlyHint=True))
    async def lookup(query: str, ctx: Context, seconds: float = 0) -> str:
        record("lookup", {"query": query, "seconds": seconds}, ctx)
        await hold(seconds)
        return f"found {query}"

    @server.tool(description="Send a message (a side effect).")
    async def send(message: str, ctx: Context, seconds: float = 0) -> str:
        record("send", {"message": message, "seconds": seconds}, ctx)
        await hold(seconds)
        return f"sent {message}"

    return server


def read_calls(log_path: str) -> list[dict[str, Any]]:
    """The calls recorded so far, oldest first."""
    try:
        with open(log_path) as log:
            return [json.loads(line) for line in log if line.strip()]
    except FileNotFoundError:
        return []


if __name__ == "__main__":
    build_server(sys.argv[1]).run("stdio")

"""A stdio MCP server that reveals its environment: for testing secret redaction."""

from __future__ import annotations

import os

from mcp.server.mcpserver import MCPServer

server = MCPServer("env-server")


@server.tool(description="The value of an environment variable.")
def getenv(name: str) -> str:
    return os.environ.get(name, "")


@server.tool(description="A large answer.")
def big(size: int) -> str:
    return "x" * size


if __name__ == "__main__":
    server.run("stdio")

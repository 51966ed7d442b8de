"""Agentdeck as an MCP server: the gateway's downstream endpoint over streamable HTTP.

Any MCP client (Claude Desktop, the MCP inspector, the SDK's `Client`, other agent
frameworks) connects with `Authorization: Bearer <api key>` and sees exactly the tools
the gateway grants that key's principal; every `tools/call` goes through the same
`Toolbox` door as the engine's calls.

- `endpoint`: the ASGI app (`build_mcp_app`, `McpEndpoint`) and the path router that
  mounts it at `/mcp` and `/mcp/`; it owns the SDK's session manager.
- `access`: who may reach it — Host/Origin checks and bearer authentication.
- `tools`: the SDK low-level server whose tool list is built per caller.
- `lean`: a valid 2026-07-28 `tools/call` answered without the SDK's per-request machinery
  (same checks, same answer; everything else goes to the SDK).
"""

from __future__ import annotations

from mcpgateway.downstream.access import PRINCIPAL_SCOPE_KEY
from mcpgateway.downstream.endpoint import McpEndpoint, build_mcp_app, route_mcp_path
from mcpgateway.downstream.tools import call_tool_result, principal_of

__all__ = [
    "PRINCIPAL_SCOPE_KEY",
    "McpEndpoint",
    "build_mcp_app",
    "call_tool_result",
    "principal_of",
    "route_mcp_path",
]

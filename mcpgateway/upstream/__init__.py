"""The upstream side of the MCP gateway: connections to the MCP servers a team registers.

Pure asyncio on the official `mcp` SDK, no Django: the gateway's Django code builds
`UpstreamConfig`s, runs one `Supervisor` and calls `Supervisor.call_tool`.
"""

from __future__ import annotations

from mcpgateway.upstream.config import (
    DiscoveredTool,
    Discovery,
    Health,
    UpstreamConfig,
    UpstreamError,
    UpstreamLost,
    UpstreamResult,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from mcpgateway.upstream.supervisor import Supervisor

__all__ = [
    "DiscoveredTool",
    "Discovery",
    "Health",
    "Supervisor",
    "UpstreamConfig",
    "UpstreamError",
    "UpstreamLost",
    "UpstreamResult",
    "UpstreamTimeout",
    "UpstreamUnavailable",
]

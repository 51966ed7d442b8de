"""The echo server (tests/fakes/mcp_echo_server.py) served over streamable HTTP by the SDK
itself, JSON responses, no gateway in front: an ASGI app for `daphne` or `uvicorn`
(`tests.fakes.mcp_echo_http:app`). The gateway benchmark calls it beside the stdio server
and `/mcp`, to show what the HTTP transport alone costs the same client."""

from __future__ import annotations

from tests.fakes.mcp_echo_server import build_server

app = build_server().streamable_http_app(json_response=True)

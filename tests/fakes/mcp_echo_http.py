"""The echo server (tests/fakes/mcp_echo_server.py) served over streamable HTTP by the SDK
itself, JSON responses, no gateway in front: an ASGI app for `daphne` or `uvicorn`
(`tests.fakes.mcp_echo_http:app`). The gateway benchmark calls it beside the stdio server
and `/mcp`, to show what the HTTP transport alone costs the same client.

The SDK's session manager runs inside the Starlette app's lifespan. Uvicorn runs lifespans;
daphne does not, so the first request starts it on a task of its own that holds it open
for the life of the process."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.fakes.mcp_echo_server import build_server

_sdk_app = build_server().streamable_http_app(json_response=True)
_started: asyncio.Event | None = None
_holder: asyncio.Task[None] | None = None
_server_runs_lifespan = False


async def _hold_lifespan(started: asyncio.Event) -> None:
    async with _sdk_app.router.lifespan_context(_sdk_app):
        started.set()
        await asyncio.Event().wait()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _started, _holder, _server_runs_lifespan
    if scope["type"] == "lifespan":  # uvicorn: the SDK app runs its own, before any request
        _server_runs_lifespan = True
        await _sdk_app(scope, receive, send)
        return
    if _started is None and not _server_runs_lifespan:
        _started = asyncio.Event()
        _holder = asyncio.get_running_loop().create_task(_hold_lifespan(_started))
    if _started is not None:
        await _started.wait()
    await _sdk_app(scope, receive, send)

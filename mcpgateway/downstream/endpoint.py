"""The MCP endpoint as an ASGI app, and the session manager it owns.

Both protocol eras are served from one URL by the SDK's `StreamableHTTPSessionManager`:
2026-07-28 (self-contained POSTs, `server/discover`) and 2025-11-25 (`initialize`,
`Mcp-Session-Id`, GET SSE, DELETE). Each request is checked (Host, bearer token) and
then handed to the manager with the principal on its scope.

The fast path (config/asgi.py routes the URL before Django's stack): the key's principal
comes from a short-lived cache (`authenticate`, see orchestrator/api_auth.py), stateless
2026-07-28 requests are answered as JSON, a `tools/call` gets its one tool's schema from
the cached catalogue (`schema_lookup`), and audit rows are committed in batches
(mcpgateway/audit_batch.py); `aclose()` flushes them.
A team holds at most `sessions_per_team` open 2025-11-25 sessions (`SessionQuota`): the SDK's
own cap is process-wide, so one team's leaky client could otherwise lock every other team out.
A valid modern `tools/call` is answered by `lean.LeanCall` (the SDK's checks, one function, no
per-request server runner); anything else reaches the SDK's manager with its body replayed.
A `tools/call` whose client disconnects is cancelled, on either path (`disconnect`): its
approval, if it waits for one, is closed instead of left for a reviewer to approve for nobody.

Django's ASGI handler has no lifespan and daphne sends none, so the manager is
started lazily by the first request, in a task this endpoint owns, and stopped by
`aclose()` (or by an ASGI lifespan shutdown, when the server sends one).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from typing import Any

from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcpgateway.downstream.access import (
    Authenticate,
    RequestGuard,
    authenticated_scope,
    error_response,
)
from mcpgateway.downstream.disconnect import DISCONNECT_SCOPE_KEY, WatchAfterBody
from mcpgateway.downstream.lean import LeanCall, wants_lean_call
from mcpgateway.downstream.tools import (
    ToolboxSource,
    build_tool_server,
    call_granted_tool,
    schema_lookup,
)
from mcpgateway.types import Principal

logger = logging.getLogger(__name__)

MANAGER_START_TIMEOUT_S = 10.0
MANAGER_STOP_TIMEOUT_S = 10.0
DEFAULT_SESSIONS_PER_TEAM = 200
SESSION_QUOTA_RETRY_AFTER_S = "60"


def build_mcp_app(
    *,
    authenticate: Authenticate,
    toolbox: ToolboxSource,
    allowed_hosts: list[str],
    server_name: str = "agentdeck",
    allowed_origins: list[str] | None = None,
    sessions_per_team: int | None = DEFAULT_SESSIONS_PER_TEAM,
) -> McpEndpoint:
    """Build the downstream MCP endpoint, an ASGI app serving one MCP URL.

    `authenticate(token)` maps a bearer token to its principal (None: refused).
    `toolbox` is the gateway's `Toolbox`, or a zero-argument factory called per MCP
    request. `allowed_hosts` takes Django's `ALLOWED_HOSTS` forms. A browser `Origin`
    must be in `allowed_origins`, or by default name one of the allowed hosts. A team may
    hold `sessions_per_team` open 2025-11-25 sessions at once (None: no limit of its own).
    """
    if not allowed_hosts:
        raise ValueError("allowed_hosts must name at least one host (or '*')")
    guard = RequestGuard(
        authenticate=authenticate, allowed_hosts=allowed_hosts, allowed_origins=allowed_origins, realm=server_name
    )
    quota = SessionQuota(sessions_per_team) if sessions_per_team is not None else None
    return McpEndpoint(build_tool_server(toolbox, server_name), guard, toolbox, quota)


def opens_session(scope: Scope, headers: Headers) -> bool:
    """Whether the SDK's manager would admit a new 2025-11-25 session for this request: a POST
    without `Mcp-Session-Id` that is not routed to the 2026-07-28 (stateless) entry, i.e. one
    with no protocol version header or a handshake era's (the manager's own routing)."""
    if scope.get("method") != "POST" or headers.get("mcp-session-id") is not None:
        return False
    version = headers.get("mcp-protocol-version")
    return version is None or version in HANDSHAKE_PROTOCOL_VERSIONS


class SessionQuota:
    """At most `limit` open 2025-11-25 sessions per team.

    A session is counted from the answer that opened it (its `Mcp-Session-Id`) until the
    manager no longer holds it (closed with DELETE, idle past its timeout, crashed); the
    openings in flight count too, so concurrent `initialize` requests cannot overshoot. A
    team at its limit gets 429 with Retry-After; other teams are unaffected. Memory: at most
    `limit` ids per team that opened sessions."""

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError("sessions_per_team must be a positive number of sessions or None")
        self.limit = limit
        self._open: dict[int, set[str]] = {}
        self._opening: dict[int, int] = {}

    def held(self, team_id: int, manager: StreamableHTTPSessionManager) -> int:
        """The team's sessions the manager still holds (forgetting the others), with those opening."""
        ids = self._open.get(team_id)
        if ids:
            live = manager._server_instances  # (the SDK's table of open sessions; no public view of it)
            ids.intersection_update(live.keys())
            if not ids:
                del self._open[team_id]
        return len(ids or ()) + self._opening.get(team_id, 0)

    async def serve(self, team_id: int, manager: StreamableHTTPSessionManager, scope: Scope, receive: Receive,
                    send: Send) -> None:
        if self.held(team_id, manager) >= self.limit:
            logger.warning("team %s: refused a new MCP session, %s are open", team_id, self.limit)
            await error_response(
                429, "too_many_sessions",
                f"This team has {self.limit} open MCP sessions; end one (DELETE) or let it expire, then retry.",
                {"Retry-After": SESSION_QUOTA_RETRY_AFTER_S})(scope, receive, send)
            return
        self._opening[team_id] = self._opening.get(team_id, 0) + 1
        opened: list[str] = []

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start" and message.get("status", 500) < 400:
                for name, value in message.get("headers", ()):
                    if name.lower() == b"mcp-session-id":
                        opened.append(value.decode("latin-1"))
            await send(message)

        try:
            await manager.handle_request(scope, receive, sending)
        finally:
            left = self._opening[team_id] - 1
            if left:
                self._opening[team_id] = left
            else:
                del self._opening[team_id]
            if opened:
                self._open.setdefault(team_id, set()).update(opened)


def route_mcp_path(endpoint: ASGIApp, fallback: ASGIApp, *, path: str = "/mcp") -> ASGIApp:
    """Route `path` and `path/` to `endpoint` (no redirect: clients POST to either).

    Everything else, including non-HTTP scopes, goes to `fallback` (Django's handler).
    """
    paths = {path.rstrip("/"), path.rstrip("/") + "/"}

    async def router(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in paths:
            await endpoint(scope, receive, send)
        else:
            await fallback(scope, receive, send)

    return router


class _EndpointClosed(Exception):
    """A request arrived after `aclose()`."""


class McpEndpoint:
    """ASGI app for the MCP URL: host check → bearer auth → the SDK's session manager."""

    def __init__(self, server: Server[Any], guard: RequestGuard, toolbox: ToolboxSource | None = None,
                 quota: SessionQuota | None = None) -> None:
        self.server = server
        self._guard = guard
        self._quota = quota
        self._toolbox = toolbox if toolbox is not None and server.get_tool_input_schema is not None else None
        # A modern `tools/call` answered without the SDK's per-request machinery (`lean`).
        self._lean = None if self._toolbox is None else LeanCall(
            call_tool=lambda principal, params, request_id: call_granted_tool(
                self._toolbox, principal, params, request_id),  # type: ignore[arg-type]
            server_info=server.server_info_stamp)
        self._lock = asyncio.Lock()
        self._manager: StreamableHTTPSessionManager | None = None
        self._runner: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._closed = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._serve_lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise ValueError(f"the MCP endpoint serves HTTP only, not {scope['type']!r}")
        headers = Headers(scope=scope)
        refusal = self._guard.check_host(headers)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        principal = await self._guard.principal_for(headers)
        if not isinstance(principal, Principal):
            await principal(scope, receive, send)
            return
        try:
            manager = await self._session_manager()
        except _EndpointClosed:
            await error_response(503, "unavailable", "The MCP endpoint is shutting down.")(scope, receive, send)
            return
        if self._toolbox is not None and headers.get("mcp-method") == "tools/call":
            # 2026-07-28 `tools/call`: the SDK asks for the called tool's schema (one lookup in
            # the cached catalogue snapshot, loaded here if needed), not the whole tools/list.
            warm = getattr(self._toolbox, "warm", None)
            if warm is not None:
                try:
                    await warm(principal)
                except Exception:  # dispatch reports the real problem as the call's result
                    logger.debug("warming the catalogue for %r failed", principal, exc_info=True)
            toolbox = self._toolbox

            def lookup(name: str) -> Any:
                return toolbox.tool_input_schema(principal, name)  # type: ignore[union-attr]

            schema_lookup.set(lookup)
            if self._lean is not None and wants_lean_call(scope, headers) and not tracing_enabled():
                replay = await self._lean(scope, receive, send, headers, principal, lookup)
                if replay is None:
                    return
                receive = replay  # not the plain success of a valid call: the SDK answers it
        sdk_scope = authenticated_scope(scope, principal, headers)
        watching = None
        if scope.get("method") == "POST":
            # A `tools/call` the SDK serves (either era; in 2025-11-25 it runs in its session's
            # task) is cancelled when its client hangs up: the SDK's JSON-response transport
            # never reads `receive` after the body (`disconnect`).
            receive = watching = WatchAfterBody(receive)
            sdk_scope[DISCONNECT_SCOPE_KEY] = watching.watch
        try:
            if self._quota is not None and opens_session(scope, headers):
                await self._quota.serve(principal.team_id, manager, sdk_scope, receive, send)
                return
            await manager.handle_request(sdk_scope, receive, send)
        finally:
            if watching is not None:
                watching.watch.stop()

    @property
    def running(self) -> bool:
        """Whether the SDK session manager is running."""
        return self._runner is not None and not self._runner.done()

    async def aclose(self) -> None:
        """Stop the session manager, ending every open session; later requests get 503.
        Deferred audit rows are committed before it returns."""
        from mcpgateway.audit_batch import flush_audit

        try:
            await self._stop_manager()
        finally:
            await asyncio.to_thread(flush_audit)

    async def _stop_manager(self) -> None:
        async with self._lock:
            self._closed = True
            runner, stop = self._runner, self._stop
            self._manager = self._runner = self._stop = None
        if runner is None or stop is None:
            return
        stop.set()
        try:
            async with asyncio.timeout(MANAGER_STOP_TIMEOUT_S):
                await asyncio.shield(runner)
        except TimeoutError:
            logger.warning("MCP session manager did not stop within %ss; cancelling it", MANAGER_STOP_TIMEOUT_S)
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)

    async def _session_manager(self) -> StreamableHTTPSessionManager:
        """The running session manager, started by the first request that needs it."""
        if self._manager is not None and self.running:
            return self._manager
        async with self._lock:
            if self._closed:
                raise _EndpointClosed
            if self._manager is None or not self.running:
                await self._start_manager()
            assert self._manager is not None
            return self._manager

    async def _start_manager(self) -> None:
        # A manager runs once; a fresh one replaces one that crashed.
        manager = StreamableHTTPSessionManager(
            app=self.server,
            json_response=True,
            # Host and Origin are checked before authentication by RequestGuard, with
            # Django's ALLOWED_HOSTS semantics; the SDK still validates Content-Type.
            security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        ready, stop = asyncio.Event(), asyncio.Event()
        # A fresh context, so the manager's tasks never inherit the first caller's contextvars.
        runner = asyncio.create_task(
            _run_manager(manager, ready, stop), name="mcp-session-manager", context=contextvars.Context()
        )
        runner.add_done_callback(_log_manager_exit)
        ready_wait = asyncio.create_task(ready.wait())
        try:
            await asyncio.wait(
                {runner, ready_wait}, timeout=MANAGER_START_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            ready_wait.cancel()
        if not ready.is_set():
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
            raise RuntimeError("the MCP session manager did not start")
        self._manager, self._runner, self._stop = manager, runner, stop
        logger.info("MCP session manager started")

    async def _serve_lifespan(self, receive: Receive, send: Send) -> None:
        """Answer an ASGI lifespan (uvicorn sends one; daphne does not): stop on shutdown."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _run_manager(manager: StreamableHTTPSessionManager, ready: asyncio.Event, stop: asyncio.Event) -> None:
    async with manager.run():
        ready.set()
        await stop.wait()


def tracing_enabled() -> bool:
    """Whether the process traces: the SDK's per-message span then runs, on the SDK path."""
    from config import tracing

    return tracing.enabled()


def _log_manager_exit(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        logger.error("MCP session manager crashed; the next request starts a new one", exc_info=exc)

"""Keeps every configured upstream MCP server connected, and routes tool calls to it.

One task per upstream owns its connection: connect (with a deadline), discover, serve,
and on a failed health probe or a dropped transport mark it down, back off
exponentially with jitter, and connect again. Each task contains its own failures, so
one broken server never disturbs another. Calls come from any task on the same event
loop and go straight to the owning task's live session (the SDK multiplexes them);
a server that is not up refuses at once with `UpstreamUnavailable` rather than
queueing. Calls must come from the event loop the supervisor runs on.

Callbacks run in the owning task, contained (an exception is logged, never fatal):
`on_health` at every change of state (starting, up, down, stopped) and `on_discovery`
after each successful connect (before `on_health(up)`, so a caller that waited for
"up" already has the tools) and after each list change that changed something.

Usage::

    async with Supervisor(on_discovery=..., on_health=...) as supervisor:
        await supervisor.add(UpstreamConfig(name="files", transport="stdio", command="npx", ...))
        result = await supervisor.call_tool("files", "read_file", {"path": "/tmp/x"})
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
from mcp.shared.exceptions import MCPError

from mcpgateway.upstream.config import (
    Discovery,
    Health,
    HealthState,
    UpstreamConfig,
    UpstreamResult,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from mcpgateway.upstream.session import UpstreamSession, open_session

logger = logging.getLogger(__name__)

OnDiscovery = Callable[[str, Discovery], Awaitable[None]]
OnHealth = Callable[[str, Health], Awaitable[None]]

_MAX_PROBE_TIMEOUT_S = 10.0
_CALLBACK_GRACE_S = 5.0


def describe(error: BaseException) -> str:
    """A short, user-facing line for an error (the first leaf of an exception group)."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}"[:500]


def backoff_delay(failures: int, initial_s: float, max_s: float) -> float:
    """Exponential backoff with jitter: somewhere in the upper half of initial * 2^(n-1), capped."""
    base = min(max_s, initial_s * 2 ** max(0, failures - 1))
    return random.uniform(base / 2, base)


async def _wait_any(*events: asyncio.Event) -> None:
    """Return as soon as any of the events is set."""
    async with anyio.create_task_group() as group:

        async def wait(event: asyncio.Event) -> None:
            await event.wait()
            group.cancel_scope.cancel()

        for event in events:
            group.start_soon(wait, event)


class _Upstream:
    """One supervised server: its state, and the body of the task that owns its connection."""

    def __init__(self, config: UpstreamConfig, supervisor: Supervisor) -> None:
        self.config = config
        self.supervisor = supervisor
        self.health = Health(state="starting")
        self.discovery: Discovery | None = None
        self.session: UpstreamSession | None = None
        self.scope = anyio.CancelScope()
        self.done = asyncio.Event()
        self._pulse = asyncio.Event()
        self._changed = asyncio.Event()
        self._wake = asyncio.Event()

    @property
    def name(self) -> str:
        return self.config.name

    def wake(self) -> None:
        """Ask the owner to probe now (a call saw the connection close)."""
        self._wake.set()

    async def wait_change(self) -> None:
        """Return at the next health change."""
        await self._pulse.wait()

    async def stop(self) -> None:
        """Cancel the owner task and wait until it (and any child process) is gone."""
        self.scope.cancel()
        await self.done.wait()

    async def run(self) -> None:
        try:
            with self.scope:
                await self._notify_health()
                await self._supervise()
        except Exception:  # only a failure racing our own stop gets here; never crash siblings
            logger.exception("upstream %s: error while stopping", self.name)
        finally:
            self.session = None
            with anyio.CancelScope(shield=True), anyio.move_on_after(_CALLBACK_GRACE_S):
                await self._set_health("stopped", "")
            self.done.set()

    async def _supervise(self) -> None:
        sup = self.supervisor
        failures = 0
        attempt = 0
        while True:
            self.health.restarts = attempt
            up_since, error = await self._connect_and_serve()
            if up_since is not None and time.monotonic() - up_since >= sup.backoff_max_s:
                failures = 0
            failures += 1
            logger.warning("upstream %s down: %s", self.name, error)
            await self._set_health("down", error)
            await anyio.sleep(backoff_delay(failures, sup.backoff_initial_s, sup.backoff_max_s))
            attempt += 1

    async def _connect_and_serve(self) -> tuple[float | None, str]:
        """One connection's life; returns when it was up (monotonic) and why it ended."""
        config = self.config
        self._changed.clear()
        self._wake.clear()
        connect_scope = anyio.CancelScope(deadline=anyio.current_time() + config.connect_timeout_s)
        up_since: float | None = None
        try:
            with connect_scope:
                async with open_session(config, self._changed.set) as session:
                    async with anyio.create_task_group() as group:
                        # Subscribe first, then list: a change in between is not lost.
                        await group.start(session.listen_for_changes, self._changed.set)
                        self._changed.clear()
                        discovery = await session.discover()
                        connect_scope.deadline = math.inf
                        up_since = time.monotonic()
                        reason = await self._serve(session, discovery, group)
                        group.cancel_scope.cancel()
                    return up_since, reason
        except Exception as error:  # contained per upstream: any failure means "down, retry"
            return up_since, describe(error)
        finally:
            self.session = None
        return up_since, f"connect timed out after {config.connect_timeout_s:g}s"

    async def _serve(self, session: UpstreamSession, discovery: Discovery, group: anyio.abc.TaskGroup) -> str:
        self.session = session
        self.discovery = discovery
        await self._emit_discovery(discovery)
        logger.info("upstream %s up (pid %s, %d tools)", self.name, session.pid, len(discovery.tools))
        await self._set_health("up", "", pid=session.pid)
        group.start_soon(self._rediscover, session)
        return await self._watch(session)

    async def _watch(self, session: UpstreamSession) -> str:
        """Probe every health interval (or at once when woken); return why the connection ended."""
        probe_timeout = min(self.config.call_timeout_s, _MAX_PROBE_TIMEOUT_S)
        while True:
            with anyio.move_on_after(self.supervisor.health_interval_s):
                await _wait_any(self._wake, session.closed)
            if session.closed.is_set():
                return "connection closed"
            self._wake.clear()
            try:
                with anyio.fail_after(probe_timeout):
                    await session.probe()
            except TimeoutError:
                return f"health check timed out after {probe_timeout:g}s"
            except MCPError as error:
                return f"health check failed: {error}"

    async def _rediscover(self, session: UpstreamSession) -> None:
        """Re-list after each list_changed; report only when something actually changed."""
        while True:
            await self._changed.wait()
            self._changed.clear()
            try:
                with anyio.fail_after(self.config.call_timeout_s):
                    discovery = await session.discover()
            except (MCPError, TimeoutError) as error:
                if not session.closed.is_set():
                    logger.warning("upstream %s: re-discovery failed: %s", self.name, describe(error))
                self._wake.set()
                continue
            if discovery != self.discovery:
                self.discovery = discovery
                await self._emit_discovery(discovery)

    async def _set_health(self, state: HealthState, error: str, pid: int | None = None) -> None:
        """Record a state; callbacks and waiters hear only of changes of state."""
        if state == self.health.state:
            self.health.error = error
            return
        self.health = Health(state=state, error=error, restarts=self.health.restarts, pid=pid)
        await self._notify_health()

    async def _notify_health(self) -> None:
        pulse, self._pulse = self._pulse, asyncio.Event()
        pulse.set()
        callback = self.supervisor.on_health
        if callback is not None:
            await self._contained(callback, dataclasses.replace(self.health))

    async def _emit_discovery(self, discovery: Discovery) -> None:
        callback = self.supervisor.on_discovery
        if callback is not None:
            await self._contained(callback, discovery)

    async def _contained(self, callback: Callable[[str, Any], Awaitable[None]], value: Any) -> None:
        try:
            await callback(self.name, value)
        except Exception:  # a callback's bug must not take the connection down
            logger.exception("upstream %s: callback failed", self.name)


class Supervisor:
    """Owns the connections to every upstream; see the module docstring."""

    def __init__(
        self,
        on_discovery: OnDiscovery | None = None,
        on_health: OnHealth | None = None,
        health_interval_s: float = 15.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
    ) -> None:
        self.on_discovery = on_discovery
        self.on_health = on_health
        self.health_interval_s = health_interval_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._upstreams: dict[str, _Upstream] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._group: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> Supervisor:
        if self._group is not None:
            raise RuntimeError("Supervisor is already running")
        group = anyio.create_task_group()
        await group.__aenter__()
        self._group = group
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        group, self._group = self._group, None
        assert group is not None
        for upstream in self._upstreams.values():
            upstream.scope.cancel()
        self._upstreams.clear()
        try:
            return await group.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as errors:
            # The task group wraps the body's own exception; let it propagate as raised.
            if exc is not None and list(errors.exceptions) == [exc]:
                return False
            raise

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def add(self, config: UpstreamConfig) -> None:
        """Start supervising `config`; an existing server of that name is replaced if it differs."""
        if self._group is None:
            raise RuntimeError("Supervisor is not running; use `async with Supervisor()`")
        async with self._lock(config.name):
            current = self._upstreams.get(config.name)
            if current is not None:
                if current.config == config:
                    return
                del self._upstreams[config.name]
                await current.stop()
            upstream = _Upstream(config, self)
            self._upstreams[config.name] = upstream
            self._group.start_soon(upstream.run, name=f"mcp-upstream:{config.name}")

    async def remove(self, name: str) -> None:
        """Stop and forget a server; when this returns its subprocess (if any) is gone."""
        async with self._lock(name):
            upstream = self._upstreams.pop(name, None)
            if upstream is not None:
                await upstream.stop()

    def _get(self, name: str) -> _Upstream:
        upstream = self._upstreams.get(name)
        if upstream is None:
            raise UpstreamUnavailable(f"unknown server {name!r}")
        return upstream

    def names(self) -> list[str]:
        """The supervised servers, sorted."""
        return sorted(self._upstreams)

    def health(self, name: str) -> Health:
        """A snapshot of one server's health (raises `UpstreamUnavailable` if unknown)."""
        return dataclasses.replace(self._get(name).health)

    def discovery(self, name: str) -> Discovery | None:
        """The latest discovery of a server, or None if unknown or never connected."""
        upstream = self._upstreams.get(name)
        return upstream.discovery if upstream is not None else None

    async def wait_up(self, name: str, timeout: float) -> Health:
        """Wait until a server is up; raises `UpstreamTimeout` (with its last error) if it is not."""
        upstream = self._get(name)
        try:
            with anyio.fail_after(timeout):
                while upstream.health.state != "up":
                    await upstream.wait_change()
                    if self._upstreams.get(name) is not upstream:
                        raise UpstreamUnavailable(f"server {name!r} was removed")
        except TimeoutError:
            health = upstream.health
            raise UpstreamTimeout(f"{name} not up after {timeout:g}s ({health.state}: {health.error})") from None
        return dataclasses.replace(upstream.health)

    async def call_tool(
        self, server: str, tool: str, arguments: dict[str, Any], timeout_s: float | None = None,
        meta: dict[str, Any] | None = None,
    ) -> UpstreamResult:
        """Call a tool on a server that is up; may be awaited from any task on this loop.

        Raises:
            UpstreamUnavailable: unknown server, not up, or the connection closed mid-call.
            UpstreamTimeout: no answer within `timeout_s` (default: the server's call_timeout_s).
        """
        upstream = self._get(server)
        session = upstream.session
        if session is None:
            health = upstream.health
            raise UpstreamUnavailable(f"{server} is {health.state}" + (f": {health.error}" if health.error else ""))
        timeout = timeout_s if timeout_s is not None else upstream.config.call_timeout_s
        try:
            return await session.call_tool(tool, arguments, timeout, meta)
        except UpstreamUnavailable:
            upstream.wake()
            raise

"""The gateway's live side in this process: one upstream supervisor, kept in step with the
database, living on the background loop.

Servers are synced when a local write commits (`notify_servers_changed`) and every
`RESYNC_S` seconds (for changes made by other processes). Discovery and health reports
are written back to the catalogue and the server rows.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from asgiref.sync import sync_to_async

from config import tracing
from config.db_writer import releasing, run_write
from mcpgateway.background import on_background, refused_work, submit
from mcpgateway.upstream.config import (
    Discovery,
    Health,
    UpstreamConfig,
    UpstreamResult,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from mcpgateway.upstream.supervisor import Supervisor

log = logging.getLogger(__name__)
RESYNC_S = 10.0


def _load_configs() -> tuple[dict[str, UpstreamConfig], dict[str, tuple[int, list[str]]], dict[int, str]]:
    """Resolved configs of every enabled server; servers whose references do not resolve are reported, not started."""
    from mcpgateway.actions.servers import resolve_config
    from mcpgateway.actions.templates import installed_values_problem
    from mcpgateway.errors import MissingVariable
    from mcpgateway.models import Health as HealthState
    from mcpgateway.models import ToolServer

    configs, redactions, broken = {}, {}, {}
    for server in ToolServer.objects.filter(enabled=True).select_related("template").prefetch_related("secrets"):
        problem = installed_values_problem(server)
        if problem is None:
            try:
                config, secrets = resolve_config(server)
            except MissingVariable as exc:
                problem = exc.message
        if problem is not None:
            broken[server.pk] = problem
            if (server.health, server.health_error) != (HealthState.DOWN, problem):  # (every 10 s, in every process)
                ToolServer.objects.filter(pk=server.pk).update(health=HealthState.DOWN, health_error=problem)
            continue
        configs[config.name] = config
        redactions[config.name] = (server.team_id, secrets)
    return configs, redactions, broken


class GatewayRuntime:
    def __init__(self) -> None:
        self.supervisor: Supervisor | None = None
        self._configs: dict[str, UpstreamConfig] = {}
        self._redactions: dict[str, tuple[int, list[str]]] = {}  # upstream -> (its team, its secrets)
        self._start_lock: asyncio.Lock | None = None
        self._sync_lock: asyncio.Lock | None = None
        self._main: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        # Set once an upstream's first discovery is recorded (or it went down trying).
        self._settled: dict[str, asyncio.Event] = {}

    # --- life cycle (background loop only) ---------------------------------------------

    async def start(self) -> None:
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
            self._sync_lock = asyncio.Lock()
        async with self._start_lock:
            if self.supervisor is not None:
                return
            ready = asyncio.Event()
            self._stop = asyncio.Event()
            self._main = asyncio.create_task(self._serve(ready, self._stop))
            await ready.wait()
        await self.sync()

    async def _serve(self, ready: asyncio.Event, stop: asyncio.Event) -> None:
        """Own the supervisor for its whole life: entered and exited in this one task."""
        try:
            async with Supervisor(on_discovery=self._on_discovery, on_health=self._on_health) as supervisor:
                self.supervisor = supervisor
                resync = asyncio.create_task(self._resync_forever())
                ready.set()
                try:
                    await stop.wait()
                finally:
                    resync.cancel()
                    self.supervisor = None
        finally:
            ready.set()

    async def stop(self) -> None:
        if self._main is None:
            return
        assert self._stop is not None
        self._stop.set()
        main, self._main = self._main, None
        await main
        self._configs.clear()
        self._redactions.clear()
        self._settled.clear()

    async def _resync_forever(self) -> None:
        while True:
            await asyncio.sleep(RESYNC_S)
            try:
                await self.sync()
            except Exception as exc:
                stop = refused_work(exc)
                if stop is not None:
                    log.info("gateway resync stopped: %s", stop)
                    return
                log.exception("gateway resync failed")

    async def sync(self) -> None:
        """Start, restart or stop upstreams so they match the enabled servers in the database."""
        if self.supervisor is None:
            await self.start()
            return
        assert self._sync_lock is not None
        async with self._sync_lock:
            configs, redactions, _ = await sync_to_async(releasing(_load_configs), thread_sensitive=False)()
            for name in set(self._configs) - set(configs):
                await self.supervisor.remove(name)
            for name, config in configs.items():
                if self._configs.get(name) != config:
                    await self.supervisor.add(config)
            self._configs = configs
            if redactions != self._redactions:
                from mcpgateway import redaction

                redaction.invalidate()
            self._redactions = redactions

    async def ready(self, timeout_s: float = 30.0) -> None:
        """Start if needed, then wait (once) until every upstream has reported its tools or failed.

        So the first run in a fresh process (the CLI, a worker) sees a filled catalogue.
        """
        await on_background(self._ready(timeout_s))

    async def _ready(self, timeout_s: float) -> None:
        if self.supervisor is None:
            await self.start()
        pending = [self._settled.setdefault(name, asyncio.Event()).wait() for name in self._configs]
        if pending:
            try:
                async with asyncio.timeout(timeout_s):
                    await asyncio.gather(*pending)
            except TimeoutError:
                log.warning("some tool servers did not report their tools within %ss", timeout_s)

    # --- calls (any loop) ---------------------------------------------------------------------

    async def call_tool(self, upstream: str, tool: str, arguments: dict[str, Any], timeout_s: float,
                        meta: dict[str, Any] | None = None) -> UpstreamResult:
        return await on_background(self._call(upstream, tool, arguments, timeout_s, meta))

    async def _call(self, upstream: str, tool: str, arguments: dict[str, Any], timeout_s: float,
                    meta: dict[str, Any] | None) -> UpstreamResult:
        if self.supervisor is None:
            await self.start()
        if upstream not in self._configs:
            await self.sync()  # a server created a moment ago by another process
        if self.supervisor is None or upstream not in self._configs:
            raise UpstreamUnavailable(f"server {upstream} is not running")
        if self.supervisor.health(upstream).state == "starting":
            # Just added (or this process just started): give it its connect time, once.
            try:
                await self.supervisor.wait_up(upstream, self._configs[upstream].connect_timeout_s)
            except UpstreamTimeout as exc:
                raise UpstreamUnavailable(str(exc)) from None
        if not (meta and "traceparent" in meta):  # no trace to continue: no context to attach
            return await self.supervisor.call_tool(upstream, tool, arguments, timeout_s, meta)
        with tracing.attached(meta):  # the SDK's own client span nests under the caller's execute_tool
            return await self.supervisor.call_tool(upstream, tool, arguments, timeout_s, meta)

    def redactions(self, upstream: str) -> list[str]:
        found = self._redactions.get(upstream)
        return found[1] if found is not None else []

    def all_redactions(self) -> list[tuple[int, str]]:
        """Every secret the running upstreams were configured with, with its server's team (a
        source for `mcpgateway.redaction`)."""
        return [(team_id, s) for team_id, secrets in list(self._redactions.values()) for s in secrets]

    def health(self, upstream: str) -> Health | None:
        if self.supervisor is None or upstream not in self._configs:
            return None
        return self.supervisor.health(upstream)

    # --- reports from the supervisor -----------------------------------------------------------

    async def _on_discovery(self, upstream: str, discovery: Discovery) -> None:
        from mcpgateway.actions.catalogue import do_record_discovery

        try:
            report = await run_write(do_record_discovery, int(upstream[1:]), discovery, self.redactions(upstream))
        except Exception:
            log.exception("recording the discovery of %s failed", upstream)
            return
        finally:
            self._settled.setdefault(upstream, asyncio.Event()).set()
        if report["held"]:
            log.warning("tools held for re-approval on %s: %s", upstream, ", ".join(report["held"]))

    async def _on_health(self, upstream: str, health: Health) -> None:
        from mcpgateway.actions.catalogue import do_record_health

        if health.state == "down":
            self._settled.setdefault(upstream, asyncio.Event()).set()
        try:
            await run_write(do_record_health, int(upstream[1:]), health.state, health.error, health.restarts)
        except Exception:
            log.exception("recording the health of %s failed", upstream)


_runtime = GatewayRuntime()


def get_runtime() -> GatewayRuntime:
    return _runtime


def notify_servers_changed() -> None:
    """After a local write to servers or secrets commits: resync (if the gateway is running)."""
    from mcpgateway import redaction

    redaction.invalidate()
    if _runtime.supervisor is not None:
        submit(_runtime.sync())


def start_gateway() -> None:
    """Connect to every enabled server now (web and worker start-up)."""
    submit(_runtime.start())

"""Turning a team's tool server off and on, restarting it, and checking that it connects.

Writes go through here (the dashboard's server page calls these); which fields a team
member may set on a server stays with `mcpgateway.actions.servers.do_save_server`.
Restart and probe act on this process's gateway runtime; other processes (workers)
follow the database on their periodic resync.

Starting a process on the host is an instance operator's decision: enabling or restarting a
server that runs a command (stdio) or reads the process environment (`env_allow`) needs an
operator (`check_start_authority`); anyone who may restart may always stop (disable).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.db import transaction

from mcpgateway.authority import check_operator
from mcpgateway.models import Health, ToolServer, Transport


@dataclass(slots=True)
class Probe:
    """What a connection test saw: the health reached, its error, and the tools discovered."""

    health: str
    error: str
    tools: list[str]

    @property
    def ok(self) -> bool:
        return self.health == Health.UP


def _servers_changed() -> None:
    from mcpgateway.runtime import notify_servers_changed

    notify_servers_changed()


def check_start_authority(server: ToolServer, *, operator: bool, what: str) -> None:
    """Refuse (403, naming why) a team member starting what runs on the host or reads its environment."""
    if operator:
        return
    if server.transport == Transport.STDIO:
        check_operator(False, f"{what} the stdio server {server.name!r} (it runs a command on the host)", "enabled")
    if server.env_allow:
        check_operator(False, f"{what} the server {server.name!r} (it reads process environment variables)",
                       "enabled")


def do_set_server_enabled(server: ToolServer, enabled: bool, *, operator: bool) -> ToolServer:
    """Stop (disable) or start again (enable) a server; its tools, grants and secrets stay.
    `operator` says whether the actor is an instance operator (see `check_start_authority`)."""
    if enabled:
        check_start_authority(server, operator=operator, what="enabling")
    fields = {"enabled": enabled}
    if not enabled:
        fields["health"] = Health.STOPPED
    ToolServer.objects.filter(pk=server.pk).update(**fields)
    server.refresh_from_db()
    transaction.on_commit(_servers_changed)
    return server


async def _restart(upstream: str) -> None:
    from mcpgateway.runtime import get_runtime

    runtime = get_runtime()
    if runtime.supervisor is None:
        await runtime.start()
        return
    await runtime.supervisor.remove(upstream)
    # Forget the running config so the next sync adds the server afresh (a new process or session).
    runtime._configs.pop(upstream, None)  # the runtime has no restart of its own
    await runtime.sync()


def do_restart_server(server: ToolServer, timeout_s: float = 30, *, operator: bool) -> None:
    """Close the server's connection (and process) in this process and open it again."""
    check_start_authority(server, operator=operator, what="restarting")
    from mcpgateway.background import submit

    ToolServer.objects.filter(pk=server.pk).update(health=Health.STARTING, health_error="")
    submit(_restart(f"s{server.pk}")).result(timeout=timeout_s)


def probe_server(server: ToolServer, timeout_s: float = 20) -> Probe:
    """Make sure this process runs the server, then wait until it is up (tools discovered) or down."""
    from mcpgateway.background import submit
    from mcpgateway.runtime import get_runtime

    runtime = get_runtime()
    submit(runtime.sync()).result(timeout=timeout_s)
    deadline = time.monotonic() + timeout_s
    while True:
        server.refresh_from_db()
        settled = server.health == Health.DOWN or (server.health == Health.UP and server.tools.exists())
        if settled or not server.enabled or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    tools = sorted(server.tools.exclude(status="removed").values_list("name", flat=True))
    return Probe(health=server.health, error=server.health_error, tools=tools)

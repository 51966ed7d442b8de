"""What each principal may see and call: a per-team snapshot of tools and grants.

Dispatch reads this on every call, so it is cached per process and rebuilt when a local
write invalidates it or after `GATEWAY_CACHE_TTL_S` (which bounds how long a change made
by another process takes to apply).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from django.conf import settings

from mcpgateway.models import Grant, PrincipalKind, Tool, ToolServer, ToolStatus, Transport
from mcpgateway.types import Principal, ToolSpec


@dataclass(frozen=True, slots=True)
class Entry:
    """One tool as the gateway dispatches it."""

    qualified: str
    tool_id: int
    tool_name: str
    server_id: int
    server_name: str
    spec: ToolSpec
    usable: bool
    reason: str
    calls_per_minute: int | None
    timeout_s: float
    caller_context: bool = False

    @property
    def upstream(self) -> str:
        return f"s{self.server_id}"


@dataclass(frozen=True, slots=True)
class GrantRow:
    id: int
    kind: str
    agent: str
    api_key_id: int | None
    server_id: int
    tool_id: int | None
    require_approval: bool
    calls_per_minute: int | None
    network_access: bool = False

    def covers(self, principal: Principal) -> bool:
        if self.kind == PrincipalKind.TEAM:
            return True
        if self.kind == PrincipalKind.AGENT:
            return principal.api_key_id is None and principal.agent == self.agent
        return principal.api_key_id is not None and principal.api_key_id == self.api_key_id

    def rank(self) -> tuple[int, int, int]:
        """Most specific wins: a tool over a whole server, a named principal over the team,
        and between equals the one that asks for approval."""
        return (self.tool_id is not None, self.kind != PrincipalKind.TEAM, self.require_approval)


@dataclass(slots=True)
class Snapshot:
    tools: dict[str, Entry] = field(default_factory=dict)
    grants: list[GrantRow] = field(default_factory=list)

    def grant_for(self, principal: Principal, entry: Entry) -> GrantRow | None:
        matching = [g for g in self.grants if g.server_id == entry.server_id and g.tool_id in (None, entry.tool_id)
                    and g.covers(principal)]
        return max(matching, key=GrantRow.rank, default=None)

    def visible(self, principal: Principal) -> list[Entry]:
        """The usable tools the principal holds a grant for, by name."""
        return [e for name, e in sorted(self.tools.items()) if e.usable and self.grant_for(principal, e) is not None]


_cache: dict[int, tuple[float, int, Snapshot]] = {}
_generation = 0
_lock = threading.Lock()


def invalidate() -> None:
    """Drop every cached snapshot in this process (after a local write commits)."""
    global _generation
    with _lock:
        _generation += 1
        _cache.clear()


def cached(team_id: int) -> Snapshot | None:
    hit = _cache.get(team_id)
    if hit is not None and hit[0] > time.monotonic() and hit[1] == _generation:
        return hit[2]
    return None


def stale(team_id: int) -> Snapshot | None:
    """An expired snapshot still usable while a fresh one loads: not invalidated by a local
    write, and expired for less than STALE_FACTOR times the TTL."""
    hit = _cache.get(team_id)
    if hit is None or hit[1] != _generation:
        return None
    if hit[0] + settings.GATEWAY_CACHE_TTL_S * (STALE_FACTOR - 1) < time.monotonic():
        return None
    return hit[2]


STALE_FACTOR = 3


def load(team_id: int) -> Snapshot:
    """Build (and cache) the team's snapshot from the database."""
    generation = _generation
    snapshot = Snapshot()
    servers = {s.pk: s for s in ToolServer.objects.filter(team_id=team_id)}
    for tool in Tool.objects.filter(server__team_id=team_id):
        server = servers[tool.server_id]
        reason = ("server disabled" if not server.enabled else "tool disabled" if not tool.enabled
                  else "held for approval: a tool new on its server" if tool.status == ToolStatus.HELD and not tool.approved_hash
                  else "held for re-approval: its definition changed" if tool.status == ToolStatus.HELD
                  else "no longer offered by its server" if tool.status == ToolStatus.REMOVED else "")
        entry = Entry(tool.qualified_name_for(server.name), tool.pk, tool.name, server.pk, server.name,
                      ToolSpec(tool.qualified_name_for(server.name), tool.description, tool.input_schema,
                               retry_safe=tool.safe_to_retry,
                               read_only=(tool.annotations or {}).get("readOnlyHint") is True,
                               trusted_hint=server.transport == Transport.STDIO or server.template_id is not None),
                      usable=not reason, reason=reason, calls_per_minute=tool.calls_per_minute,
                      timeout_s=server.call_timeout_s, caller_context=server.caller_context)
        snapshot.tools[entry.qualified] = entry
    for g in Grant.objects.filter(team_id=team_id).exclude(api_key__revoked_at__isnull=False):
        snapshot.grants.append(GrantRow(g.pk, g.principal_kind, g.agent_name, g.api_key_id, g.server_id, g.tool_id,
                                        g.require_approval, g.calls_per_minute, g.network_access))
    with _lock:
        if generation == _generation:
            _cache[team_id] = (time.monotonic() + settings.GATEWAY_CACHE_TTL_S, generation, snapshot)
    return snapshot

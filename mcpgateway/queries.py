"""Read-side queries the dashboard and the REST API use: servers with health, tools with
schemas, grants, held tools, and the audit log with filters. All scoped to one team."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from mcpgateway.actions.catalogue import held_change
from mcpgateway.models import AuditEntry, Grant, Tool, ToolApproval, ToolServer, ToolStatus


def servers(team_id: int) -> QuerySet[ToolServer]:
    """Servers with their health and tool counts."""
    return ToolServer.objects.filter(team_id=team_id).annotate(
        tool_count=Count("tools", filter=~Q(tools__status=ToolStatus.REMOVED)),
        held_count=Count("tools", filter=Q(tools__status=ToolStatus.HELD)),
    ).order_by("name")


def tools(team_id: int, server_id: int | None = None) -> QuerySet[Tool]:
    rows = Tool.objects.filter(server__team_id=team_id).select_related("server").order_by("server__name", "name")
    return rows.filter(server_id=server_id) if server_id is not None else rows


def held_tools(team_id: int) -> list[dict[str, Any]]:
    """Tools waiting for re-approval, each with what changed."""
    return [{"tool": t, "change": held_change(t)} for t in tools(team_id).filter(status=ToolStatus.HELD)]


def grants(team_id: int, agent: str | None = None, api_key_id: int | None = None) -> QuerySet[Grant]:
    rows = Grant.objects.filter(team_id=team_id).select_related("server", "tool", "api_key")
    if agent is not None:
        rows = rows.filter(Q(agent_name=agent) | Q(principal_kind="team"))
    if api_key_id is not None:
        rows = rows.filter(Q(api_key_id=api_key_id) | Q(principal_kind="team"))
    return rows.order_by("principal_kind", "agent_name", "server__name")


@dataclass(slots=True)
class AuditFilter:
    run_id: int | None = None
    agent: str | None = None
    api_key_id: int | None = None
    tool: str | None = None
    status: str | None = None
    before_id: int | None = None  # keyset pagination: rows older than this id


def audit_log(team_id: int, where: AuditFilter | None = None, limit: int = 50) -> list[AuditEntry]:
    """Newest first; page with `before_id` = the last row's id."""
    where = where or AuditFilter()
    rows = AuditEntry.objects.filter(team_id=team_id)
    for field, value in (("run_id", where.run_id), ("agent_name", where.agent), ("api_key_id", where.api_key_id),
                         ("tool_name", where.tool), ("status", where.status)):
        if value is not None:
            rows = rows.filter(**{field: value})
    if where.before_id is not None:
        rows = rows.filter(id__lt=where.before_id)
    return list(rows.order_by("-id")[: max(1, min(limit, 500))])


def call_approvals(team_id: int, status: str = "pending", limit: int = 100) -> list[ToolApproval]:
    """Calls API clients made over /mcp that wait for a person (a run's approvals are review
    items). Pending ones oldest first, and only those whose caller can still be waiting
    (`GATEWAY_APPROVAL_WAIT_S`): an older one's caller is gone (a web process that died with
    it), and deciding it would run nothing. Decided ones newest first."""
    rows = ToolApproval.objects.filter(team_id=team_id, run_id__isnull=True, status=status)
    if status == ToolApproval.Status.PENDING:
        rows = rows.filter(created_at__gte=approval_cutoff()).order_by("created_at", "id")
    else:
        rows = rows.order_by("-decided_at", "-id")
    return list(rows.select_related("decided_by")[: max(1, min(limit, 500))])


def approval_cutoff():
    """Pending call approvals created before this have no caller left to wait for them."""
    return timezone.now() - timezone.timedelta(seconds=settings.GATEWAY_APPROVAL_WAIT_S + 5)


def pending_call_approvals(team_id: int) -> int:
    return ToolApproval.objects.filter(team_id=team_id, run_id__isnull=True, status=ToolApproval.Status.PENDING,
                                       created_at__gte=approval_cutoff()).count()

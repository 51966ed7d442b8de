"""The tool catalogue: what each server offers, kept in step with discovery.

A tool's first definition counts as approved. When a server later describes a tool
differently (description or schemas), the tool is held — callers no longer see it —
until an admin approves the new definition (rug-pull defence); the change is kept to show.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from mcpgateway.models import Health, Tool, ToolServer, ToolStatus, definition_hash
from mcpgateway.upstream.config import Discovery


def _invalidate() -> None:
    from mcpgateway.catalogue import invalidate

    invalidate()


@transaction.atomic
def do_record_discovery(server_id: int, discovery: Discovery) -> dict[str, list[str]]:
    """Upsert the discovered tools; hold changed ones; mark missing ones removed."""
    server = ToolServer.objects.select_for_update().get(pk=server_id)
    existing = {t.name: t for t in server.tools.all()}
    seen: set[str] = set()
    report: dict[str, list[str]] = {"added": [], "held": [], "removed": [], "restored": []}
    for found in discovery.tools:
        seen.add(found.name)
        definition = {"description": found.description, "input_schema": found.input_schema, "output_schema": found.output_schema}
        digest = definition_hash(definition)
        tool = existing.get(found.name)
        if tool is None:
            Tool.objects.create(server=server, name=found.name, description=found.description, input_schema=found.input_schema,
                                output_schema=found.output_schema, annotations=found.annotations, approved_hash=digest,
                                approved_definition=definition, current_hash=digest)
            report["added"].append(found.name)
            continue
        status = ToolStatus.ACTIVE if digest == tool.approved_hash else ToolStatus.HELD
        if status == ToolStatus.HELD and tool.status != ToolStatus.HELD:
            report["held"].append(found.name)
        if tool.status == ToolStatus.REMOVED and status == ToolStatus.ACTIVE:
            report["restored"].append(found.name)
        Tool.objects.filter(pk=tool.pk).update(description=found.description, input_schema=found.input_schema,
                                               output_schema=found.output_schema, annotations=found.annotations,
                                               current_hash=digest, status=status, last_seen=timezone.now())
    for name, tool in existing.items():
        if name not in seen and tool.status != ToolStatus.REMOVED:
            Tool.objects.filter(pk=tool.pk).update(status=ToolStatus.REMOVED)
            report["removed"].append(name)
    transaction.on_commit(_invalidate)
    return report


def do_approve_tool_definition(tool: Tool) -> Tool:
    """Accept a held tool's current definition."""
    tool.approved_hash = tool.current_hash
    tool.approved_definition = tool.definition()
    tool.status = ToolStatus.ACTIVE
    tool.save(update_fields=["approved_hash", "approved_definition", "status"])
    transaction.on_commit(_invalidate)
    return tool


def do_set_tool_enabled(tool: Tool, enabled: bool) -> Tool:
    tool.enabled = enabled
    tool.save(update_fields=["enabled"])
    transaction.on_commit(_invalidate)
    return tool


def held_change(tool: Tool) -> dict[str, Any]:
    """What changed in a held tool: field → (approved, current)."""
    approved = tool.approved_definition or {}
    current = tool.definition()
    return {k: {"approved": approved.get(k), "current": current[k]} for k in current if approved.get(k) != current[k]}


def do_record_health(server_id: int, state: str, error: str, restarts: int) -> None:
    if state not in Health.values:
        state = Health.UNKNOWN
    ToolServer.objects.filter(pk=server_id).update(health=state, health_error=error[:2000], restarts=restarts,
                                                   health_changed_at=timezone.now())

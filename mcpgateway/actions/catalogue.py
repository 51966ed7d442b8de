"""The tool catalogue: what each server offers, kept in step with discovery.

The tools of a server's first discovery count as approved. Afterwards two things hold a
tool — callers no longer see it — until a team builder approves it (rug-pull defence):
a tool whose definition changed (description, schemas or annotations such as
`destructiveHint`; the change is kept to show), and a tool the server did not offer
before (held from its first sight, with no approved definition).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from mcpgateway.models import Health, Tool, ToolServer, ToolStatus, definition_hash
from mcpgateway.redaction import Redactor, get_redactor
from mcpgateway.upstream.config import Discovery


def _invalidate() -> None:
    from mcpgateway.catalogue import invalidate

    invalidate()


# Schema keys whose string values are prose (shown to members and models), not structure.
_PROSE_KEYS = frozenset({"description", "title", "default", "examples"})


def _redact_prose(value: Any, redactor: Redactor, prose: bool = False) -> Any:
    if isinstance(value, str):
        return redactor.text(value) if prose else value
    if isinstance(value, dict):
        return {k: _redact_prose(v, redactor, prose or k in _PROSE_KEYS) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_prose(v, redactor, prose) for v in value]
    return value


def redacted_definition(found: Any, own_secrets: list[str]) -> dict[str, Any]:
    """A discovered tool's definition with the server's own secrets (its token, an operator's
    host variable it reads) redacted from its prose: the description, and the descriptions,
    titles, defaults and examples in its schemas. Only the server's own secrets, and never a
    schema's structure: with every team's secrets, one team's secret `object` rewrote another
    team's `"type": "object"` and held all its tools."""
    redactor = Redactor(own_secrets)
    return {"description": redactor.text(found.description or "") if found.description else found.description,
            "input_schema": _redact_prose(found.input_schema, redactor),
            "output_schema": _redact_prose(found.output_schema, redactor),
            "annotations": _redact_prose(found.annotations, redactor)}


@transaction.atomic
def do_record_discovery(server_id: int, discovery: Discovery, own_secrets: list[str] | None = None) -> dict[str, list[str]]:
    """Upsert the discovered tools; hold changed and newly added ones; mark missing ones removed."""
    server = ToolServer.objects.select_for_update().get(pk=server_id)
    existing = {t.name: t for t in server.tools.all()}
    # A server seen before has had its tools approved once: what it adds later waits for approval.
    approved_once = bool(existing)
    seen: set[str] = set()
    report: dict[str, list[str]] = {"added": [], "held": [], "removed": [], "restored": []}
    # Whether what callers can see changed: a rediscovery that finds the same definitions (the
    # common case: a reconnect, a list_changed notification that changed nothing) keeps every
    # process's catalogue snapshot and /mcp key cache, which an invalidation would empty.
    changed = False
    # Every member sees a definition (the tools pages, the API, /mcp tools/list) and so does
    # every model that is offered the tool: a secret the server was given (its token, an
    # operator's host variable) that its definition repeats is redacted before it is stored.
    for found in discovery.tools:
        seen.add(found.name)
        definition = redacted_definition(found, own_secrets or [])
        digest = definition_hash(definition)
        tool = existing.get(found.name)
        if tool is None:
            approved = {} if approved_once else {"approved_hash": digest, "approved_definition": definition}
            Tool.objects.create(server=server, name=found.name, current_hash=digest, **definition,
                                status=ToolStatus.HELD if approved_once else ToolStatus.ACTIVE, **approved)
            report["added"].append(found.name)
            changed = True
            if approved_once:
                report["held"].append(found.name)
            continue
        upgrade = _legacy_approval(tool, definition, digest)
        status = ToolStatus.ACTIVE if digest == (upgrade or tool.approved_hash) else ToolStatus.HELD
        if status == ToolStatus.HELD and tool.status != ToolStatus.HELD:
            report["held"].append(found.name)
        if tool.status == ToolStatus.REMOVED and status == ToolStatus.ACTIVE:
            report["restored"].append(found.name)
        fields: dict[str, Any] = {"approved_hash": upgrade, "approved_definition": definition} if upgrade else {}
        changed = changed or bool(upgrade) or digest != tool.current_hash or status != tool.status
        Tool.objects.filter(pk=tool.pk).update(**definition, current_hash=digest, status=status,
                                               last_seen=timezone.now(), **fields)
    for name, tool in existing.items():
        if name not in seen and tool.status != ToolStatus.REMOVED:
            Tool.objects.filter(pk=tool.pk).update(status=ToolStatus.REMOVED)
            report["removed"].append(name)
            changed = True
    if changed:
        transaction.on_commit(_invalidate)
    return report


def _legacy_approval(tool: Tool, definition: dict[str, Any], digest: str) -> str:
    """An approval recorded before annotations were covered (its definition has no
    `annotations` key) carries over to the same definition with today's annotations: the new
    hash to store, or "" when there is nothing to carry over."""
    approved = tool.approved_definition
    if not tool.approved_hash or not isinstance(approved, dict) or "annotations" in approved:
        return ""
    if tool.annotations != definition["annotations"]:
        return ""  # the annotations changed since they were last seen: that needs an approval
    without = {k: v for k, v in definition.items() if k != "annotations"}
    return digest if definition_hash(without) == tool.approved_hash else ""


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
    # Shown to every member: a server's error often repeats the token it refused.
    team_id = ToolServer.objects.filter(pk=server_id).values_list("team_id", flat=True).first()
    error = get_redactor(team_id).text(error)[:2000] if error else ""
    ToolServer.objects.filter(pk=server_id).update(health=state, health_error=error, restarts=restarts,
                                                   health_changed_at=timezone.now())

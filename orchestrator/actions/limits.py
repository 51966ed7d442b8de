"""Rate limits and budgets: a team's, or one agent's, pipeline's, API key's or member's in it.

`check_limit` validates (known scope and kind, a scope the kind is kept for, a positive value,
whole numbers for counts, a target in the same team for every scope but `team`); `do_save_limit` creates or edits
one row, `do_delete_limit` removes it. One row per (scope, target, kind): `do_save_limit` checks
with the team row locked, and the database's unique constraints hold it for any other writer.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import IntegrityError, transaction

from mcpgateway.models import ApiKey
from orchestrator.actions.errors import ActionError, Conflict
from orchestrator.models import (
    Agent,
    Limit,
    LimitKind,
    LimitScope,
    Membership,
    Pipeline,
    Team,
)

# Kinds counted in whole units; the dollar kinds take cents.
WHOLE_KINDS = {LimitKind.REQUESTS_PER_MINUTE, LimitKind.CONCURRENT_RUNS, LimitKind.TOKENS_PER_DAY,
               LimitKind.TOKENS_PER_MONTH}
MAX_VALUE = Decimal("999999999999")
DUPLICATE = "this target already has a limit of this kind; edit that one"
# The scopes each kind is kept for (orchestrator/limits.py: request rates and concurrent runs;
# orchestrator/budgets.py: budgets). Any other pair would be saved and shown, and never kept.
_BUDGET_SCOPES = (LimitScope.TEAM, LimitScope.AGENT, LimitScope.PIPELINE)
ENFORCED_SCOPES: dict[str, tuple[str, ...]] = {
    # (per agent: its model calls, which the model door paces)
    LimitKind.REQUESTS_PER_MINUTE: (LimitScope.TEAM, LimitScope.AGENT, LimitScope.API_KEY, LimitScope.USER),
    LimitKind.CONCURRENT_RUNS: tuple(LimitScope.values),
    LimitKind.TOKENS_PER_DAY: _BUDGET_SCOPES, LimitKind.TOKENS_PER_MONTH: _BUDGET_SCOPES,
    LimitKind.USD_PER_DAY: _BUDGET_SCOPES, LimitKind.USD_PER_MONTH: _BUDGET_SCOPES,
}


@dataclass(slots=True)
class CheckedLimit:
    scope: str
    kind: str
    value: Decimal
    target: dict[str, Any]  # the Limit fields naming the target: agent, pipeline, api_key_id or user


def _value(kind: str, raw: Any) -> Decimal:
    try:
        value = Decimal(str(raw).strip())
    except (InvalidOperation, ValueError):
        raise ActionError("enter a number", "value") from None
    if not value.is_finite() or value <= 0:
        raise ActionError("the value must be greater than zero", "value")
    if value > MAX_VALUE:
        raise ActionError("the value is too large", "value")
    if kind in WHOLE_KINDS and value != value.to_integral_value():
        raise ActionError("this kind of limit counts whole units", "value")
    if value.as_tuple().exponent < -4:
        raise ActionError("at most four decimal places", "value")
    return value


def _target(team: Team, scope: str, target_id: int | None) -> dict[str, Any]:
    empty: dict[str, Any] = {"agent": None, "pipeline": None, "api_key_id": None, "user": None}
    if scope == LimitScope.TEAM:
        return empty
    if target_id is None:
        raise ActionError(f"choose the {LimitScope(scope).label.lower()} this limit applies to", "target")
    if scope == LimitScope.AGENT:
        agent = Agent.objects.filter(team=team, pk=target_id).first()
        if agent is None:
            raise ActionError("no such agent in this team", "target")
        return {**empty, "agent": agent}
    if scope == LimitScope.PIPELINE:
        pipeline = Pipeline.objects.filter(team=team, pk=target_id).first()
        if pipeline is None:
            raise ActionError("no such pipeline in this team", "target")
        return {**empty, "pipeline": pipeline}
    if scope == LimitScope.API_KEY:
        if not ApiKey.objects.filter(team_id=team.pk, pk=target_id, revoked_at__isnull=True).exists():
            raise ActionError("no such live API key in this team", "target")
        return {**empty, "api_key_id": target_id}
    membership = Membership.objects.select_related("user").filter(team=team, user_id=target_id).first()
    if membership is None:
        raise ActionError("no such member of this team", "target")
    return {**empty, "user": membership.user}


def check_limit(team: Team, scope: str, kind: str, value: Any, target_id: int | None = None,
                editing: Limit | None = None) -> CheckedLimit:
    """Validate a limit; raises ActionError naming the field to fix."""
    if scope not in LimitScope.values:
        raise ActionError(f"unknown scope {scope!r}; one of {', '.join(LimitScope.values)}", "scope")
    if kind not in LimitKind.values:
        raise ActionError(f"unknown kind {kind!r}; one of {', '.join(LimitKind.values)}", "kind")
    kept_for = ENFORCED_SCOPES.get(kind, tuple(LimitScope.values))
    if scope not in kept_for:
        names = ", ".join(LimitScope(s).label.lower() for s in kept_for)
        raise ActionError(f"a {LimitKind(kind).label.lower()} limit is kept per {names}, not per "
                          f"{LimitScope(scope).label.lower()}", "scope")
    checked = CheckedLimit(scope, kind, _value(kind, value), _target(team, scope, target_id))
    same = Limit.objects.filter(team=team, scope=scope, kind=kind, **checked.target)
    if editing is not None:
        same = same.exclude(pk=editing.pk)
    if same.exists():
        raise ActionError(DUPLICATE, "kind")
    return checked


@transaction.atomic
def do_save_limit(team: Team, scope: str, kind: str, value: Any, target_id: int | None = None,
                  limit: Limit | None = None) -> Limit:
    """Create a limit, or change `limit` (which must belong to `team`). A change of its kind,
    scope or target makes it another limit: returned with a new id, the old one deleted."""
    if limit is not None and limit.team_id != team.pk:
        raise ActionError("no such limit in this team", "limit")
    # Two saves of the same limit at once both passed the check below and both inserted; with
    # the team row locked the second one waits, then finds the first one's row.
    Team.objects.select_for_update().filter(pk=team.pk).values_list("pk", flat=True).first()
    checked = check_limit(team, scope, kind, value, target_id, editing=limit)
    if limit is not None and _definition(limit.scope, limit.kind, limit.agent_id, limit.pipeline_id, limit.api_key_id,
                                         limit.user_id) != _checked_definition(checked):
        # Another unit or another target is another budget: made as a new limit (new id), the
        # old one deleted with its counters and reservations. Edited in place, its day's count
        # meant nothing for it (300 tokens read as 300 micro-dollars; another agent's use), and
        # a run claimed before the edit still applied and re-counted the old definition.
        limit.delete()
        limit = None
    row = limit or Limit(team=team)
    row.scope, row.kind, row.value = checked.scope, checked.kind, checked.value
    for field, target in checked.target.items():
        setattr(row, field, target)
    try:
        with transaction.atomic():
            row.save()
    except IntegrityError:  # a writer that took no team lock (the admin, a shell) saved it first
        raise Conflict(DUPLICATE, "kind") from None
    return row


def _definition(*fields: Any) -> tuple[Any, ...]:
    return tuple(fields)


def _checked_definition(checked: CheckedLimit) -> tuple[Any, ...]:
    target = checked.target
    return _definition(checked.scope, checked.kind, getattr(target["agent"], "pk", None),
                       getattr(target["pipeline"], "pk", None), target["api_key_id"], getattr(target["user"], "pk", None))


def do_delete_limit(limit: Limit) -> None:
    limit.delete()

"""Read-side queries for the review queue, tools, limits & usage, and agents pages.

Everything is scoped to one team. Usage is aggregated in SQL by day (`TruncDate`, in the
current time zone) and returned as plain JSON-ready dicts for the charts.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Count, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from mcpgateway import queries as gateway
from mcpgateway.models import ApiKey, Grant, Tool, ToolApproval, ToolStatus
from orchestrator.models import (
    ROLE_RANK,
    Agent,
    Limit,
    LimitScope,
    Membership,
    Pipeline,
    ReviewItem,
    ReviewReason,
    Role,
    Run,
    RunStatus,
    StepRun,
    UsageRecord,
)

USAGE_DAYS = 30

# --- review queue ---------------------------------------------------------------------------


def review_items(team_id: int, tab: str = "pending", assigned_to: int | None = None,
                 limit: int = 200) -> list[ReviewItem]:
    """Pending items oldest first (a queue), or decided ones newest first (the decisions' audit)."""
    rows = (ReviewItem.objects.filter(team_id=team_id)
            .select_related("run__pipeline_version__pipeline", "decided_by", "assigned_to"))
    if tab == "decided":
        rows = rows.exclude(status=ReviewItem.Status.PENDING).order_by("-decided_at", "-id")
    else:
        rows = rows.filter(status=ReviewItem.Status.PENDING).order_by("created_at", "id")
    if assigned_to is not None:
        rows = rows.filter(assigned_to_id=assigned_to)
    items = list(rows[:limit])
    for item in items:
        item.actions = review_actions(item)
        item.edited_output = isinstance(item.decision, dict) and "output" in item.decision
    return items


def pending_count(team_id: int) -> int:
    """Review items and the /mcp calls waiting on a person: what the nav badge counts."""
    from mcpgateway.queries import pending_call_approvals

    return ReviewItem.objects.filter(team_id=team_id, status=ReviewItem.Status.PENDING).count() + pending_call_approvals(team_id)


def review_actions(item: ReviewItem) -> list[str]:
    """The decisions that make sense for this item, in the order the page offers them.

    `edit` is approve with a replacement output: only agent steps and gates use an output.
    """
    if item.reason == ReviewReason.APPROVAL:
        return ["approve", "reject"]
    if (item.context or {}).get("interrupted_call"):  # "this call may have run"
        return ["retry", "skip", "edit_result", "reject"]
    kind = item.context.get("kind")
    if item.reason == ReviewReason.GATE:
        actions = ["approve", "edit"]
    elif kind in ("agent", None):
        first = {ReviewReason.FAILURE: "retry", ReviewReason.BUDGET: "resume"}.get(item.reason, "approve")
        actions = [first, "edit"]
    else:
        actions = ["approve"]  # a parallel or loop step: continue with what it has
    return [*actions, "reject"]


def _as_text(value: Any) -> tuple[str, bool]:
    """(text for an edit box, whether it is JSON)."""
    if value is None:
        return "", False
    if isinstance(value, str):
        return value, False
    return json.dumps(value, indent=2, ensure_ascii=False), True


def review_detail(item: ReviewItem) -> dict[str, Any]:
    """What the reviewer needs to see: the context fields by name, the approval's call, the
    step's input and output, and the text to prefill the edited output with."""
    context = item.context or {}
    step = StepRun.objects.filter(run_id=item.run_id, key=item.step_key).first()
    approval = None
    if item.reason == ReviewReason.APPROVAL and context.get("approval_id"):
        approval = ToolApproval.objects.filter(pk=context["approval_id"], team_id=item.team_id).first()
    output = context.get("output")
    if output is None and step is not None and step.status == "succeeded":
        output = step.output
    editable = context.get("show") if item.reason == ReviewReason.GATE else output
    edit_text, edit_json = _as_text(editable)
    known = {"step_id", "kind", "instructions", "show", "prompt", "error", "failed_branches", "approval_id", "tool",
             "output"}
    return {
        "kind": context.get("kind") or (step.kind if step else ""),
        "instructions": context.get("instructions", ""),
        "show": context.get("show"),
        "prompt": context.get("prompt") or ((step.input or {}).get("prompt") if step else None),
        "output": output,
        "error": context.get("error") or (step.error if step else ""),
        "failed_branches": context.get("failed_branches") or {},
        "tool": context.get("tool") or (approval.tool_name if approval else ""),
        "arguments": approval.arguments if approval else None,
        "approval": approval,
        "agent": step.agent_name if step else "",
        "attempt": step.attempt if step else None,
        "extra": {k: v for k, v in context.items() if k not in known},
        "edit_text": edit_text,
        "edit_json": edit_json,
        "run_limits": item.run.limits or {},
        "show_is_text": isinstance(context.get("show"), str),
        "output_is_text": isinstance(output, str),
    }


def reviewers(team_id: int) -> list[Any]:
    """Members who may decide reviews (reviewer and above), for the assign menu."""
    allowed = [r for r, rank in ROLE_RANK.items() if rank >= ROLE_RANK[Role.REVIEWER]]
    return [m.user for m in Membership.objects.filter(team_id=team_id, role__in=allowed)
            .select_related("user").order_by("user__username")]


# --- usage ------------------------------------------------------------------------------------


def _window(days: int, today: date | None) -> tuple[list[date], datetime]:
    today = today or timezone.localdate()
    first = today - timedelta(days=days - 1)
    start = timezone.make_aware(datetime.combine(first, time.min))
    return [first + timedelta(days=i) for i in range(days)], start


def _money(value: Decimal | None) -> float:
    return float(round(value or Decimal(0), 6))


def usage_data(team_id: int, days: int = USAGE_DAYS, today: date | None = None,
               agent_id: int | None = None) -> dict[str, Any]:
    """Daily series for the charts: tokens (input/output), cost by agent, runs by status and
    the error rate (failed / all runs started that day, in percent; null on days without runs).

    With `agent_id`, only that agent's tokens and cost (no run series).
    """
    span, start = _window(days, today)
    index = {d: i for i, d in enumerate(span)}
    records = UsageRecord.objects.filter(team_id=team_id, created_at__gte=start)
    if agent_id is not None:
        records = records.filter(agent_id=agent_id)
    by_day = (records.annotate(day=TruncDate("created_at")).values("day", "agent__name")
              .annotate(input=Sum("input_tokens"), output=Sum("output_tokens"), cost=Sum("cost_usd"), calls=Count("id"))
              .order_by("day", "agent__name"))
    tokens_in, tokens_out = [0] * days, [0] * days
    cost: dict[str, list[float]] = defaultdict(lambda: [0.0] * days)
    totals = {"input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0, "calls": 0}
    for row in by_day:
        i = index.get(row["day"])
        if i is None:
            continue
        tokens_in[i] += row["input"] or 0
        tokens_out[i] += row["output"] or 0
        cost[row["agent__name"] or "(no agent)"][i] += _money(row["cost"])
        totals["input_tokens"] += row["input"] or 0
        totals["output_tokens"] += row["output"] or 0
        totals["cost_usd"] += _money(row["cost"])
        totals["calls"] += row["calls"]
    data: dict[str, Any] = {
        "days": [d.isoformat() for d in span],
        "tokens": {"input": tokens_in, "output": tokens_out},
        "cost_by_agent": [{"label": name, "data": [round(v, 6) for v in values]} for name, values in sorted(cost.items())],
        "totals": {**totals, "cost_usd": round(totals["cost_usd"], 6)},
    }
    if agent_id is None:
        data.update(_run_series(team_id, start, index, days))
    return data


def _run_series(team_id: int, start: datetime, index: dict[date, int], days: int) -> dict[str, Any]:
    rows = (Run.objects.filter(team_id=team_id, created_at__gte=start).annotate(day=TruncDate("created_at"))
            .values("day", "status").annotate(n=Count("id")).order_by("day", "status"))
    by_status: dict[str, list[int]] = {s: [0] * days for s in RunStatus.values}
    for row in rows:
        i = index.get(row["day"])
        if i is not None:
            by_status[row["status"]][i] += row["n"]
    total = [sum(values[i] for values in by_status.values()) for i in range(days)]
    failed = by_status[RunStatus.FAILED]
    return {
        "runs_by_status": [{"label": s, "data": by_status[s]} for s in RunStatus.values if any(by_status[s])],
        "runs_total": total,
        "error_rate": [round(100 * failed[i] / total[i], 1) if total[i] else None for i in range(days)],
    }


# --- limits -----------------------------------------------------------------------------------


def limits(team_id: int) -> list[Limit]:
    rows = list(Limit.objects.filter(team_id=team_id).select_related("agent", "pipeline", "user")
                .order_by("scope", "kind", "id"))
    keys = dict(ApiKey.objects.filter(team_id=team_id).values_list("pk", "name"))
    for row in rows:
        row.target_label = {
            LimitScope.TEAM: "the whole team",
            LimitScope.AGENT: row.agent.name if row.agent else "",
            LimitScope.PIPELINE: row.pipeline.name if row.pipeline else "",
            LimitScope.API_KEY: keys.get(row.api_key_id, f"key #{row.api_key_id}"),
            LimitScope.USER: row.user.get_username() if row.user else "",
        }[row.scope]
        row.target_value = {LimitScope.AGENT: row.agent_id, LimitScope.PIPELINE: row.pipeline_id,
                            LimitScope.API_KEY: row.api_key_id, LimitScope.USER: row.user_id}.get(row.scope)
    return rows


def limit_targets(team_id: int) -> list[dict[str, Any]]:
    """Option groups for the limit form's target, each option `(value "<scope>:<id>", label)`."""
    members = get_user_model().objects.filter(memberships__team_id=team_id).order_by("username")
    keys = ApiKey.objects.filter(team_id=team_id, revoked_at__isnull=True).order_by("name")
    groups = [
        ("agent", "Agents", [(a.pk, a.name) for a in Agent.objects.filter(team_id=team_id, internal=False)]),
        ("pipeline", "Pipelines", [(p.pk, p.name) for p in Pipeline.objects.filter(team_id=team_id, internal=False)]),
        ("api_key", "API keys", [(k.pk, f"{k.name} ({k.prefix}…)") for k in keys]),
        ("user", "Members", [(u.pk, u.get_username()) for u in members]),
    ]
    return [{"scope": scope, "label": label, "options": [(f"{scope}:{pk}", name) for pk, name in options]}
            for scope, label, options in groups]


# --- tools --------------------------------------------------------------------------------------


def api_keys(team_id: int) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(team_id=team_id).select_related("user").order_by("revoked_at", "-created_at")


def live_api_keys(team_id: int) -> QuerySet[ApiKey]:
    return api_keys(team_id).filter(revoked_at__isnull=True)


# --- agents -------------------------------------------------------------------------------------


def agents(team_id: int) -> QuerySet[Agent]:
    return Agent.objects.filter(team_id=team_id, internal=False).order_by("name")


def agent_tools(team_id: int, agent_name: str) -> list[dict[str, Any]]:
    """The agent's grants (its own and team-wide ones), each with the live tools it covers."""
    grants = list(gateway.grants(team_id, agent=agent_name))
    server_ids = {g.server_id for g in grants if g.tool_id is None}
    by_server: dict[int, list[Tool]] = defaultdict(list)
    for tool in Tool.objects.filter(server_id__in=server_ids, status=ToolStatus.ACTIVE, enabled=True).order_by("name"):
        by_server[tool.server_id].append(tool)
    result = []
    for grant in grants:
        tools = [grant.tool] if grant.tool_id else by_server.get(grant.server_id, [])
        result.append({"grant": grant, "tools": tools})
    return result


def agent_runs(team_id: int, agent_name: str, limit: int = 15) -> list[Run]:
    """Runs in which one of the agent's steps ran, newest first."""
    run_ids = StepRun.objects.filter(run__team_id=team_id, agent_name=agent_name).values("run_id")
    return list(Run.objects.filter(team_id=team_id, pk__in=run_ids)
                .select_related("pipeline_version__pipeline").order_by("-created_at", "-id")[:limit])


def grant_counts(team_id: int) -> dict[str, int]:
    """How many grants name each agent (team-wide grants not counted)."""
    rows = Grant.objects.filter(team_id=team_id, principal_kind="agent").values("agent_name").annotate(n=Count("id"))
    return {r["agent_name"]: r["n"] for r in rows}


def team_wide_grants(team_id: int) -> int:
    return Grant.objects.filter(team_id=team_id, principal_kind="team").count()


def agent_usage_totals(team_id: int, days: int = USAGE_DAYS) -> dict[int, dict[str, Any]]:
    """Tokens and cost per agent over the last `days` days, for the list page."""
    _, start = _window(days, None)
    rows = (UsageRecord.objects.filter(team_id=team_id, created_at__gte=start, agent__isnull=False)
            .values("agent_id").annotate(tokens=Sum("input_tokens") + Sum("output_tokens"), cost=Sum("cost_usd")))
    return {r["agent_id"]: {"tokens": r["tokens"] or 0, "cost": _money(r["cost"])} for r in rows}


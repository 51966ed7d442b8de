"""Observability: error rate, latency percentiles by step kind, tool and model, and cost by
agent and pipeline over time — read from the run, step, usage and audit records (the same
rows the metrics and traces come from)."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import timedelta
from typing import Any

from django.db import connection
from django.db.models import Count, F, Q, Sum
from django.db.models.functions import Substr, TruncDate
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path
from django.utils import timezone

from dashboard.access import team_view
from mcpgateway.models import AuditEntry
from orchestrator.models import (
    Agent,
    Pipeline,
    ReviewItem,
    Run,
    RunEvent,
    RunStatus,
    StepRun,
    UsageRecord,
)

SAMPLE = 500  # most recent rows per latency series (model latency: across models); enough for a p95


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)], 1)


def _latency(groups: dict[str, list[float]]) -> dict[str, list]:
    names = sorted(groups)
    return {"labels": names, "p50": [percentile(groups[n], 50) for n in names],
            "p95": [percentile(groups[n], 95) for n in names], "count": [len(groups[n]) for n in names]}


RECENT_RUNS = 300  # step and model latency come from this many recent runs
EVALS = "evals"  # eval runs' internal agents and pipelines are one series, not one per eval run


def day_of(field: str) -> Any:
    """The UTC day of a timestamp column, grouped on in SQL. SQLite's TruncDate is a Python
    function called per row (seconds over a season's usage rows); its stored text starts with
    the UTC date, so the first ten characters are the day. TIME_ZONE is UTC (settings)."""
    if connection.vendor == "sqlite":
        return Substr(field, 1, 10)
    return TruncDate(field)


def _recent_run_ids(team_id: int, since) -> list[int]:
    return list(Run.objects.filter(team_id=team_id, created_at__gte=since).order_by("-created_at")
                .values_list("id", flat=True)[:RECENT_RUNS])


def _step_latency(team_id: int, since, run_ids: list[int]) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Working time of steps by kind (the steps of recent runs), and apart from it, how long
    items waited for a person — a review gate's hours would otherwise flatten every other bar."""
    steps: dict[str, list[float]] = defaultdict(list)
    rows = (StepRun.objects.filter(run_id__in=run_ids, finished_at__isnull=False, started_at__isnull=False)
            .exclude(kind="review").values_list("kind", "started_at", "finished_at"))
    for kind, started, finished in rows:
        if len(steps[kind]) < SAMPLE:
            steps[kind].append((finished - started).total_seconds() * 1000)
    waits: dict[str, list[float]] = defaultdict(list)
    for reason, created, decided in (ReviewItem.objects.filter(team_id=team_id, created_at__gte=since,
                                                               decided_at__isnull=False)
                                     .order_by("-id").values_list("reason", "created_at", "decided_at")[:SAMPLE]):
        waits[reason].append((decided - created).total_seconds() * 1000)
    return steps, waits


def _tool_latency(team_id: int, since) -> dict[str, list[float]]:
    tools: dict[str, list[float]] = defaultdict(list)
    rows = (AuditEntry.objects.filter(team_id=team_id, created_at__gte=since).order_by("-created_at")
            .values_list("tool_name", "latency_ms")[:SAMPLE * 6])
    for name, latency in rows:
        if name in tools or len(tools) < 50:
            tools[name].append(latency)
    return tools


def _model_latency(run_ids: list[int]) -> dict[str, list[float]]:
    models: dict[str, list[float]] = defaultdict(list)
    for data in (RunEvent.objects.filter(run_id__in=run_ids, type="llm.finished").order_by("-id")
                 .values_list("data", flat=True)[:SAMPLE]):
        if isinstance(data, dict) and data.get("duration_ms") is not None:
            models[f"{data.get('provider', '?')}/{data.get('model', '?')}"].append(float(data["duration_ms"]))
    return models


def observability_data(team_id: int, days: int) -> dict[str, Any]:
    since = timezone.now() - timedelta(days=days)
    day_list = [(since + timedelta(days=i + 1)).date().isoformat() for i in range(days)]

    runs = (Run.objects.filter(team_id=team_id, created_at__gte=since).annotate(day=day_of("created_at"))
            .values("day").annotate(total=Count("id"), failed=Count("id", filter=Q(status=RunStatus.FAILED))))
    per_day = {str(r["day"]): r for r in runs}
    error_rate = [round(100 * per_day[d]["failed"] / per_day[d]["total"], 1) if d in per_day and per_day[d]["total"] else None
                  for d in day_list]
    run_ids = _recent_run_ids(team_id, since)
    steps, waits = _step_latency(team_id, since, run_ids)

    # One pass over the usage rows for both cost charts; names come from the (small) agent and
    # pipeline tables.
    agents = {pk: (EVALS if internal else name) for pk, name, internal in
              Agent.objects.filter(team_id=team_id).values_list("id", "name", "internal")}
    pipelines = {pk: (EVALS if internal else name) for pk, name, internal in
                 Pipeline.objects.filter(team_id=team_id).values_list("id", "name", "internal")}
    by_agent: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    by_pipeline: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for row in (UsageRecord.objects.filter(team_id=team_id, created_at__gte=since).annotate(day=day_of("created_at"))
                .values("day", "agent_id", pipeline_id=F("run__pipeline_version__pipeline_id"))
                .annotate(cost=Sum("cost_usd")).order_by()):
        cost, day = float(row["cost"] or 0), str(row["day"])
        by_agent[agents.get(row["agent_id"], "(deleted)")][day] += cost
        if row["pipeline_id"] is not None:
            by_pipeline[pipelines.get(row["pipeline_id"], "(deleted)")][day] += cost

    def series(groups: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
        return [{"label": name, "data": [round(values.get(d, 0.0), 6) for d in day_list]} for name, values in sorted(groups.items())]

    return {"days": day_list, "error_rate": error_rate,
            "runs": [per_day[d]["total"] if d in per_day else 0 for d in day_list],
            "step_latency": _latency(steps), "review_wait": _latency(waits),
            "tool_latency": _latency(_tool_latency(team_id, since)),
            "model_latency": _latency(_model_latency(run_ids)),
            "cost_by_agent": series(by_agent), "cost_by_pipeline": series(by_pipeline)}


@team_view("usage.view")
def index(request: HttpRequest) -> HttpResponse:
    try:
        days = min(90, max(1, int(request.GET.get("days", "14"))))
    except ValueError:
        days = 14
    return render(request, "dashboard/observability/index.html",
                  {"data": observability_data(request.team.pk, days), "days": days})


urlpatterns = [path("", index, name="observability")]

"""Observability: error rate, latency percentiles by step kind, tool and model, and cost by
agent and pipeline over time — read from the run, step, usage and audit records (the same
rows the metrics and traces come from)."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import timedelta
from typing import Any

from django.db.models import Count, F, Q, Sum
from django.db.models.functions import TruncDate
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path
from django.utils import timezone

from dashboard.access import team_view
from mcpgateway.models import AuditEntry
from orchestrator.models import Run, RunEvent, RunStatus, StepRun, UsageRecord

SAMPLE = 2000  # most recent rows per latency series (model latency: across models)


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)], 1)


def _latency(groups: dict[str, list[float]]) -> dict[str, list]:
    names = sorted(groups)
    return {"labels": names, "p50": [percentile(groups[n], 50) for n in names],
            "p95": [percentile(groups[n], 95) for n in names], "count": [len(groups[n]) for n in names]}


def observability_data(team_id: int, days: int) -> dict[str, Any]:
    since = timezone.now() - timedelta(days=days)
    day_list = [(since + timedelta(days=i + 1)).date().isoformat() for i in range(days)]

    runs = (Run.objects.filter(team_id=team_id, created_at__gte=since).annotate(day=TruncDate("created_at"))
            .values("day").annotate(total=Count("id"), failed=Count("id", filter=Q(status=RunStatus.FAILED))))
    per_day = {str(r["day"]): r for r in runs}
    error_rate = [round(100 * per_day[d]["failed"] / per_day[d]["total"], 1) if d in per_day and per_day[d]["total"] else None
                  for d in day_list]

    steps: dict[str, list[float]] = defaultdict(list)
    step_rows = StepRun.objects.filter(run__team_id=team_id, started_at__gte=since, finished_at__isnull=False)
    for kind in step_rows.values_list("kind", flat=True).distinct():
        for started, finished in step_rows.filter(kind=kind).order_by("-id").values_list("started_at", "finished_at")[:SAMPLE]:
            steps[kind].append((finished - started).total_seconds() * 1000)
    tools: dict[str, list[float]] = defaultdict(list)
    audit_rows = AuditEntry.objects.filter(team_id=team_id, created_at__gte=since)
    for name in audit_rows.values_list("tool_name", flat=True).distinct()[:50]:
        tools[name] = list(audit_rows.filter(tool_name=name).order_by("-id").values_list("latency_ms", flat=True)[:SAMPLE])
    models: dict[str, list[float]] = defaultdict(list)
    for data in (RunEvent.objects.filter(run__team_id=team_id, type="llm.finished", created_at__gte=since)
                 .order_by("-id").values_list("data", flat=True)[:SAMPLE]):
        if isinstance(data, dict) and data.get("duration_ms") is not None:
            models[f"{data.get('provider', '?')}/{data.get('model', '?')}"].append(float(data["duration_ms"]))

    usage = UsageRecord.objects.filter(team_id=team_id, created_at__gte=since).annotate(day=TruncDate("created_at"))
    by_agent: dict[str, dict[str, float]] = defaultdict(dict)
    for row in usage.values("day", name=F("agent__name")).annotate(cost=Sum("cost_usd")):
        by_agent[row["name"] or "(deleted)"][str(row["day"])] = float(row["cost"] or 0)
    by_pipeline: dict[str, dict[str, float]] = defaultdict(dict)
    for row in (usage.filter(run__isnull=False).values("day", name=F("run__pipeline_version__pipeline__name"))
                .annotate(cost=Sum("cost_usd"))):
        by_pipeline[row["name"]][str(row["day"])] = float(row["cost"] or 0)

    def series(groups: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
        return [{"label": name, "data": [round(values.get(d, 0.0), 6) for d in day_list]} for name, values in sorted(groups.items())]

    return {"days": day_list, "error_rate": error_rate,
            "runs": [per_day[d]["total"] if d in per_day else 0 for d in day_list],
            "step_latency": _latency(steps), "tool_latency": _latency(tools), "model_latency": _latency(models),
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

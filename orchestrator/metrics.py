"""The orchestrator's Prometheus metrics, read off the run events each commit persists
(no second source of truth), plus the values /metrics reads from the database at scrape
time (review queue, runs waiting for a worker, upstream health)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from mcpgateway.models import ToolServer
from orchestrator.models import ReviewItem, Run, RunStatus

log = logging.getLogger(__name__)
RUNS_STARTED = Counter("agentdeck_runs_started", "Runs started (resumes not counted).", ["pipeline"])
RUNS_FINISHED = Counter("agentdeck_runs_finished", "Runs that stopped, by final status.", ["pipeline", "status"])
STEP_SECONDS = Histogram("agentdeck_step_duration_seconds", "Step duration by kind and outcome.", ["kind", "status"],
                         buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900))
MODEL_CALLS = Counter("agentdeck_model_calls", "Model calls.", ["provider", "model", "agent"])
MODEL_TOKENS = Counter("agentdeck_model_tokens", "Model tokens.", ["provider", "model", "agent", "direction"])
MODEL_COST = Counter("agentdeck_model_cost_usd", "Model cost in USD.", ["provider", "model", "agent"])
MODEL_SECONDS = Histogram("agentdeck_model_call_duration_seconds", "Model call latency.", ["provider", "model"],
                          buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 40, 80, 160))

# Final stops only: a run that waits for a review finishes later (once).
FINAL = {"run.succeeded": "succeeded", "run.failed": "failed", "run.cancelled": "cancelled"}


class RunObserver:
    """Turns one run's committed events into metric updates (kept per store: step start times)."""

    def __init__(self, pipeline: str):
        self.pipeline = pipeline
        self._step_started: dict[str, float] = {}

    def observe(self, payloads: Iterable[dict[str, Any]]) -> None:
        """Never raises: metrics must not fail a step whose state is already committed."""
        try:
            self._observe(payloads)
        except Exception:
            log.exception("recording run metrics failed")

    def _observe(self, payloads: Iterable[dict[str, Any]]) -> None:
        for event in payloads:
            kind, data = event["type"], event["data"]
            if kind == "run.started":
                RUNS_STARTED.labels(self.pipeline).inc()
            elif kind in FINAL:
                RUNS_FINISHED.labels(self.pipeline, FINAL[kind]).inc()
            elif kind == "step.started":
                self._step_started[event["step_key"]] = time.monotonic()
            elif kind in ("step.succeeded", "step.failed", "step.skipped"):
                started = self._step_started.pop(event["step_key"], None)
                if started is not None:
                    STEP_SECONDS.labels(data.get("kind", "?"), kind.split(".", 1)[1]).observe(time.monotonic() - started)
            elif kind == "llm.finished":
                labels = (data.get("provider", "?"), data.get("model", "?"), data.get("agent", "?"))
                MODEL_CALLS.labels(*labels).inc()
                MODEL_TOKENS.labels(*labels, "input").inc(data.get("input_tokens", 0))
                MODEL_TOKENS.labels(*labels, "output").inc(data.get("output_tokens", 0))
                MODEL_COST.labels(*labels).inc(float(data.get("cost_usd") or 0))
                MODEL_SECONDS.labels(labels[0], labels[1]).observe((data.get("duration_ms") or 0) / 1000)


class DatabaseCollector:
    """Gauges read at scrape time, so every process reports the same truth."""

    def collect(self):
        now = timezone.now()
        depth = GaugeMetricFamily("agentdeck_review_queue_depth", "Pending review items.", labels=["team"])
        oldest = GaugeMetricFamily("agentdeck_review_oldest_age_seconds", "Age of the oldest pending review item.",
                                   labels=["team"])
        for row in (ReviewItem.objects.filter(status=ReviewItem.Status.PENDING).values("team_id")
                    .annotate(n=Count("id"), first=Min("created_at"))):
            depth.add_metric([str(row["team_id"])], row["n"])
            oldest.add_metric([str(row["team_id"])], _age(now, row["first"]))
        yield depth
        yield oldest
        waiting = GaugeMetricFamily("agentdeck_runs_waiting", "Runs queued for a worker.", labels=["team"])
        for row in Run.objects.filter(status=RunStatus.QUEUED).values("team_id").annotate(n=Count("id")):
            waiting.add_metric([str(row["team_id"])], row["n"])
        yield waiting
        up = GaugeMetricFamily("agentdeck_upstream_up", "Tool server health (1 up, 0 otherwise).",
                               labels=["team", "server", "health"])
        for server in ToolServer.objects.filter(enabled=True).only("team_id", "name", "health"):
            up.add_metric([str(server.team_id), server.name, server.health], 1 if server.health == "up" else 0)
        yield up


def _age(now: datetime, then: datetime | None) -> float:
    return max(0.0, (now - then).total_seconds()) if then else 0.0

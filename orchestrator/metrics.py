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
                _child(RUNS_STARTED, (self.pipeline,)).inc()
            elif kind in FINAL:
                _child(RUNS_FINISHED, (self.pipeline, FINAL[kind])).inc()
            elif kind == "step.started":
                self._step_started[event["step_key"]] = time.monotonic()
            elif kind in _STEP_ENDS:
                started = self._step_started.pop(event["step_key"], None)
                if started is not None:
                    _child(STEP_SECONDS, (data.get("kind", "?"), _STEP_ENDS[kind])).observe(time.monotonic() - started)
            elif kind == "llm.finished":
                _model_call(data)


_STEP_ENDS = {"step.succeeded": "succeeded", "step.failed": "failed", "step.skipped": "skipped"}
# A metric's child per label values, looked up once: `labels()` validates and locks on every
# call, and a step's metrics (two histograms, four counters) paid that six times. Holds no
# series the metric itself does not hold (a child is only ever made by `labels`).
_children: dict[tuple[Any, tuple[str, ...]], Any] = {}


def _child(metric: Any, labels: tuple[str, ...]) -> Any:
    found = _children.get((metric, labels))
    if found is None:
        found = _children[metric, labels] = metric.labels(*labels)
    return found


def _model_call(data: dict[str, Any]) -> None:
    labels = (str(data.get("provider", "?")), str(data.get("model", "?")), str(data.get("agent", "?")))
    _child(MODEL_CALLS, labels).inc()
    for direction in ("input", "output"):
        tokens = data.get(f"{direction}_tokens", 0)
        counter = _child(MODEL_TOKENS, (*labels, direction))  # (the series exists from the first call on)
        if tokens:
            counter.inc(tokens)
    cost = float(data.get("cost_usd") or 0)
    counter = _child(MODEL_COST, labels)
    if cost:
        counter.inc(cost)
    _child(MODEL_SECONDS, labels[:2]).observe((data.get("duration_ms") or 0) / 1000)


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

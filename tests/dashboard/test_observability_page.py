"""The observability page's figures, from runs, steps, usage and audit rows with known values."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from mcpgateway.models import AuditEntry
from orchestrator.models import Run, StepRun, UsageRecord
from tests.conftest import counting_toolbox, execute, pipeline, scripted, start

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_page_shows_error_rate_latency_percentiles_and_cost(team, owner):
    scripted(team, "calc", {"tool_calls": [{"name": "t__add", "arguments": {"a": 1, "b": 2}}]}, {"text": "3"})
    scripted(team, "broken", {"tool_calls": [{"name": "t__nope", "arguments": {}}]}, {"text": "x"})
    good = execute(start(pipeline(team, {"steps": [{"kind": "agent", "id": "s", "agent": "calc", "prompt": "p"}]}, name="adder")),
                   counting_toolbox({"calc": ["t__add"]}, []))
    failing = pipeline(team, {"steps": [{"kind": "agent", "id": "s", "agent": "broken", "prompt": "p", "output_format": "json"}]},
                       name="strict")
    bad = execute(start(failing), counting_toolbox({"calc": ["t__add"]}, []))
    assert good.status == "succeeded" and bad.status != "succeeded"
    Run.objects.filter(pk=bad.pk).update(status="failed")  # (it stopped for review; count it as failed)
    now = timezone.now()
    for ms in (10, 20, 30, 40, 1000):
        AuditEntry.objects.create(team_id=team.pk, principal_kind="agent", tool_name="x__y", status="ok", latency_ms=ms,
                                  created_at=now)
    step = StepRun.objects.filter(run=good).first()
    StepRun.objects.filter(pk=step.pk).update(started_at=now - timedelta(milliseconds=250), finished_at=now)
    UsageRecord.objects.filter(run=good).update(cost_usd=Decimal("0.5"))

    client = Client()
    client.force_login(owner)
    page = client.get("/observability/?days=7").content.decode()
    data = json.loads(page.split('id="observability-data" type="application/json">')[1].split("</script>")[0])

    assert data["runs"][-1] == 2 and data["error_rate"][-1] == 50.0
    tools = dict(zip(data["tool_latency"]["labels"], data["tool_latency"]["p50"], strict=True))
    assert tools["x__y"] == 30.0 and dict(zip(data["tool_latency"]["labels"], data["tool_latency"]["p95"], strict=True))["x__y"] == 1000.0
    assert "agent" in data["step_latency"]["labels"] and "scripted/scripted-1" in data["model_latency"]["labels"]
    by_pipeline = {s["label"]: s["data"][-1] for s in data["cost_by_pipeline"]}
    assert by_pipeline["adder"] == 0.5 * UsageRecord.objects.filter(run=good).count()
    assert {s["label"] for s in data["cost_by_agent"]} == {"calc", "broken"}

"""Both reference pipelines run to completion with the scripted provider."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync

from mcpgateway.models import AuditEntry, ToolServer
from orchestrator.demo import FIXED, seed_demo
from orchestrator.execution import execute_run
from orchestrator.models import Pipeline, RunEvent, StepRun, UsageRecord
from tests.conftest import execute, start, start_servers

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_runs_the_code_pipeline_through_the_fix_loop(gateway_runtime):
    """The security agent scans through the gateway, on the built-in code-tools MCP server."""
    team, _, _ = seed_demo(password="demo-pass-123")
    start_servers(gateway_runtime, ToolServer.objects.get(team_id=team.pk, name="code"))

    run = start(Pipeline.objects.get(team=team, slug="code-review"), {"task": "add two numbers"})
    async_to_sync(execute_run)(run.pk)
    run.refresh_from_db()

    assert run.status == "succeeded", run.error
    assert run.output["code"] == FIXED
    assert run.output["review"].startswith("approved")
    assert "scanner found nothing" in run.output["security_report"]
    assert run.output["docs"].startswith("## add(a, b)")
    keys = list(StepRun.objects.filter(run=run, kind="agent").order_by("id").values_list("key", flat=True))
    assert keys == ["coder#1", "reviewer#1", "coder#2", "reviewer#2", "security", "docs"]
    # the security agent really called its scanning tool, through the gateway
    assert RunEvent.objects.filter(run=run, type="tool.finished", data__name="code__scan").count() == 1
    assert AuditEntry.objects.get(run_id=run.pk).status == "ok"


def test_it_runs_the_market_pipeline_with_four_analysts_and_a_summary():
    team, _, _ = seed_demo(password="demo-pass-123")

    run = execute(start(Pipeline.objects.get(team=team, slug="market-analysis"), {"ticker": "ACME"}))

    assert run.status == "succeeded", run.error
    assert set(run.output) == {"technical", "fundamental", "sentiment", "flow", "summary"}
    assert run.output["summary"].startswith("Recommendation")
    summary = StepRun.objects.get(run=run, key="summary")
    for view in ("momentum positive", "Revenue growth", "mildly positive", "net buying"):
        assert view in summary.input["prompt"]


def test_it_records_usage_and_cost_for_every_model_call():
    team, _, _ = seed_demo(password="demo-pass-123")

    run = execute(start(Pipeline.objects.get(team=team, slug="market-analysis"), {"ticker": "ACME"}))

    records = UsageRecord.objects.filter(run=run)
    assert records.count() == 5
    assert sum(r.input_tokens for r in records) == run.input_tokens
    assert sum(r.output_tokens for r in records) == run.output_tokens
    # scripted is priced at $1 / $2 per million tokens by default
    expected = sum(r.input_tokens * 1 + r.output_tokens * 2 for r in records) / 1_000_000
    assert float(run.cost_usd) == pytest.approx(expected, abs=1e-6)
    assert all(r.agent is not None for r in records)

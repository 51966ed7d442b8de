"""The usage page's chart data: daily sums from UsageRecord and Run, aggregated in SQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from dashboard import queries
from orchestrator.models import Run, UsageRecord
from tests.conftest import pipeline, scripted, start

pytestmark = pytest.mark.django_db

TODAY = timezone.localdate()


def at(days_ago: int, hour: int = 12) -> datetime:
    day = TODAY - timedelta(days=days_ago)
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def usage(team, agent, days_ago: int, tokens_in: int, tokens_out: int, cost: str, hour: int = 12) -> UsageRecord:
    row = UsageRecord.objects.create(team=team, agent=agent, provider="scripted", model="scripted-1",
                                     input_tokens=tokens_in, output_tokens=tokens_out, cost_usd=Decimal(cost))
    UsageRecord.objects.filter(pk=row.pk).update(created_at=at(days_ago, hour))
    return row


def run(team, pipe, status: str, days_ago: int) -> Run:
    row = start(pipe)
    Run.objects.filter(pk=row.pk).update(status=status, created_at=at(days_ago))
    return row


@pytest.fixture
def seeded(team):
    coder, docs = scripted(team, "coder"), scripted(team, "docs")
    usage(team, coder, 0, 100, 50, "0.010")
    usage(team, coder, 0, 20, 10, "0.002", hour=23)
    usage(team, docs, 0, 5, 5, "0.001", hour=0)
    usage(team, docs, 3, 1000, 500, "0.500")
    usage(team, coder, 40, 99999, 99999, "9.999")  # outside the 30 days
    pipe = pipeline(team, {"steps": [{"kind": "agent", "id": "s", "agent": "coder", "prompt": "x"}]})
    for status in ("succeeded", "succeeded", "failed"):
        run(team, pipe, status, 0)
    run(team, pipe, "failed", 3)
    run(team, pipe, "succeeded", 40)
    return {"coder": coder, "docs": docs}


def test_it_sums_tokens_per_day(team, seeded):
    data = queries.usage_data(team.pk)

    assert len(data["days"]) == 30 and data["days"][-1] == TODAY.isoformat()
    assert data["tokens"]["input"][-1] == 125 and data["tokens"]["output"][-1] == 65
    assert data["tokens"]["input"][-4] == 1000 and data["tokens"]["output"][-4] == 500
    assert sum(data["tokens"]["input"]) == 1125


def test_it_stacks_cost_per_day_by_agent(team, seeded):
    data = queries.usage_data(team.pk)

    cost = {series["label"]: series["data"] for series in data["cost_by_agent"]}
    assert cost["coder"][-1] == pytest.approx(0.012)
    assert cost["docs"][-1] == pytest.approx(0.001)
    assert cost["docs"][-4] == pytest.approx(0.5)
    assert data["totals"]["cost_usd"] == pytest.approx(0.513)


def test_it_counts_runs_per_day_by_status_and_the_error_rate(team, seeded):
    data = queries.usage_data(team.pk)

    runs = {series["label"]: series["data"] for series in data["runs_by_status"]}
    assert runs["succeeded"][-1] == 2 and runs["failed"][-1] == 1 and runs["failed"][-4] == 1
    assert data["error_rate"][-1] == pytest.approx(33.3)
    assert data["error_rate"][-4] == 100
    assert data["error_rate"][-2] is None  # no runs that day


def test_it_keeps_other_teams_out(team, seeded, outsider):
    from orchestrator.actions import do_create_team

    other = do_create_team("Elsewhere", outsider)
    usage(other, None, 0, 7777, 0, "1")

    assert queries.usage_data(team.pk)["tokens"]["input"][-1] == 125


def test_it_puts_the_data_on_the_page_for_the_charts(team, seeded, teammate):
    client = Client()
    client.force_login(teammate)

    page = client.get("/usage/").content.decode()

    script = page.split('<script id="usage-data" type="application/json">')[1].split("</script>")[0]
    data = json.loads(script)
    assert data["tokens"]["input"][-1] == 125
    assert page.count("<canvas data-chart=") == 4
    assert "vendor/chart.umd.min.js" in page and "js/charts.js" in page

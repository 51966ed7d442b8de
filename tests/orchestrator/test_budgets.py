"""Token and dollar budgets (Limit rows) stop runs exactly at their boundary and queue a review."""

from __future__ import annotations

from decimal import Decimal

import pytest

from orchestrator.actions import do_decide_review
from orchestrator.models import BudgetCounter, Limit, UsageRecord
from tests.conftest import execute, pipeline, scripted, start

pytestmark = pytest.mark.django_db(transaction=True)

# Each call: the prompt is 40 characters (10 input tokens), the answer 400 (100 output tokens).
PROMPT = "x" * 40
SPEC = {"steps": [{"kind": "agent", "id": f"s{i}", "agent": "w", "prompt": PROMPT} for i in range(5)]}


@pytest.fixture
def writer(team):
    return scripted(team, "w", {"text": "y" * 400})


def test_it_stops_a_run_exactly_at_a_team_token_budget(team, writer, owner):
    Limit.objects.create(team=team, scope="team", kind="tokens_per_day", value=Decimal(300))

    run = execute(start(pipeline(team, SPEC)))

    assert run.status == "waiting_review"
    assert run.input_tokens + run.output_tokens == 300  # 110 + 110 + 80 (the third answer cut to fit)
    assert [u.output_tokens for u in UsageRecord.objects.filter(run=run).order_by("id")] == [100, 100, 70]
    item = run.review_items.get()
    assert (item.reason, item.step_key) == ("budget", "s3")
    assert "the Tokens per day budget of the team (300" in item.context["error"]
    assert BudgetCounter.objects.get().used == 300

    # Raising the budget and resuming continues from the paused step.
    Limit.objects.filter(team=team).update(value=Decimal(10_000))
    do_decide_review(item, owner, "resume", submit=False)
    run = execute(run)
    assert run.status == "succeeded"
    assert UsageRecord.objects.filter(run=run).count() == 5


def test_it_counts_earlier_usage_of_the_period_and_other_runs(team, writer):
    Limit.objects.create(team=team, scope="team", kind="tokens_per_day", value=Decimal(250))
    first = execute(start(pipeline(team, {"steps": SPEC["steps"][:1]}, name="one")))
    assert first.status == "succeeded"

    second = execute(start(pipeline(team, SPEC, name="many")))

    assert second.input_tokens + second.output_tokens == 140  # 250 - 110 left for the second run
    assert second.status == "waiting_review"


def test_it_applies_an_agent_budget_only_to_that_agent(team, writer):
    other = scripted(team, "other", {"text": "z" * 400})
    Limit.objects.create(team=team, scope="agent", agent=writer, kind="tokens_per_month", value=Decimal(110))
    spec = {"steps": [{"kind": "agent", "id": "a", "agent": "other", "prompt": PROMPT},
                      {"kind": "agent", "id": "b", "agent": "w", "prompt": PROMPT},
                      {"kind": "agent", "id": "c", "agent": "w", "prompt": PROMPT}]}

    run = execute(start(pipeline(team, spec)))

    assert run.review_items.get().step_key == "c"
    assert UsageRecord.objects.filter(run=run, agent=other).count() == 1


def test_it_stops_at_a_dollar_budget(team, writer):
    from orchestrator.models import ModelPrice

    ModelPrice.objects.create(provider="scripted", model="scripted-1", input_per_mtok=Decimal(1000), output_per_mtok=Decimal(1000))
    Limit.objects.create(team=team, scope="team", kind="usd_per_day", value=Decimal("0.25"))  # 250 tokens' worth

    run = execute(start(pipeline(team, SPEC)))

    assert run.status == "waiting_review"
    assert run.cost_usd <= Decimal("0.25")
    assert run.cost_usd == Decimal("0.25")

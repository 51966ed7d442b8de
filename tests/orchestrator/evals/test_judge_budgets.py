"""The eval harness's LLM judge called its model through a door with no team budgets: an agent
budget on the judge, or a team budget already used up, did not stop it, and its usage was
recorded beside a counter that never learned of it, so the budget's recorded usage passed its
value (found by a review). Its calls now take room from the team's and its agent's budgets."""

from __future__ import annotations

from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync

from orchestrator.evals.harness import do_create_eval_run, execute_eval_run
from orchestrator.evals.suite_files import do_import_suite
from orchestrator.models import BudgetCounter, Limit, UsageRecord
from tests.conftest import execute, pipeline, scripted, start

pytestmark = [pytest.mark.django_db(transaction=True)]

SUITE = """
suite: poems
name: Poems
target: {agent: writer}
judge_agent: judge
concurrency: 1
cases:
  - {name: haiku, input: {prompt: "a haiku"}, expect: {kind: rubric, value: "Is it a haiku?"}}
"""


def _agents(team):
    scripted(team, "writer", {"text": "Autumn moon rises"})
    return scripted(team, "judge", {"text": "PASS: " + "y" * 1600})  # ~400 output tokens


def test_an_agent_budget_on_the_judge_stops_its_calls(team, gateway_runtime):
    judge = _agents(team)
    Limit.objects.create(team=team, scope="agent", agent=judge, kind="tokens_per_day", value=Decimal(10))
    suite = do_import_suite(team, SUITE)
    async_to_sync(execute_eval_run)(do_create_eval_run(suite).pk)
    spent = sum(u.input_tokens + u.output_tokens for u in UsageRecord.objects.filter(agent=judge))
    assert spent <= 10, f"the judge spent {spent} tokens of its 10-token daily budget"


def test_a_team_budget_holds_the_judges_calls_too(team, gateway_runtime):
    _agents(team)
    limit = Limit.objects.create(team=team, scope="team", kind="tokens_per_day", value=Decimal(1000))
    suite = do_import_suite(team, SUITE)
    async_to_sync(execute_eval_run)(do_create_eval_run(suite).pk)
    # Then ordinary runs use what the counter says is left.
    spec = {"steps": [{"kind": "agent", "id": f"s{i}", "agent": "writer", "prompt": "x" * 40} for i in range(200)]}
    execute(start(pipeline(team, spec, name="many")))
    recorded = sum(u.input_tokens + u.output_tokens for u in UsageRecord.objects.filter(team=team))
    counter = BudgetCounter.objects.get(limit=limit).used
    assert recorded <= 1000 and counter == recorded, (recorded, counter)

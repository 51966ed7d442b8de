"""A budget whose unit, period or target is changed (it becomes a new limit, new id), or a budget
created, while a run goes on did not bind that run: the run's claim read the old ids, `as_now`
dropped the deleted one and never learned of the new one, so the run spent without that limit
for as long as it kept its claim (found by a review). The model door now reads the team's
budgets again before each call — at most every `BUDGETS_FRESH_S` for a run under none."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async

from config.db_writer import releasing
from mcpgateway.inprocess import InProcessToolbox
from orchestrator.actions.limits import do_save_limit
from orchestrator.model_door import BUDGETS_FRESH_S
from orchestrator.models import Limit, UsageRecord
from tests.conftest import execute, pipeline, scripted, start

pytestmark = pytest.mark.django_db(transaction=True)

SPEC = {"steps": [{"kind": "agent", "id": "boss", "agent": "boss", "prompt": "tighten"},
                  *({"kind": "agent", "id": f"s{i}", "agent": "w", "prompt": "x" * 40} for i in range(10))]}


@pytest.mark.parametrize("change", ["edit_period", "edit_unit", "create"])
def test_a_budget_changed_while_a_run_goes_on_holds_for_its_next_calls(team, change):
    from orchestrator.models import ModelPrice

    ModelPrice.objects.create(provider="scripted", model="scripted-1", input_per_mtok=Decimal(1000),
                              output_per_mtok=Decimal(1000))  # 1 token = $0.001
    scripted(team, "boss", {"tool_calls": [{"name": "t__tighten", "arguments": {}}]}, {"text": "ok"})
    scripted(team, "w", {"text": "y" * 400})  # 10 in + 100 out per step
    generous = None
    if change != "create":
        generous = Limit.objects.create(team=team, scope="team", kind="tokens_per_day", value=Decimal(1_000_000))

    async def tighten() -> str:
        def go():
            if change == "edit_period":
                do_save_limit(team, "team", "tokens_per_month", "300", limit=generous)
            elif change == "edit_unit":
                do_save_limit(team, "team", "usd_per_day", "0.3", limit=generous)
            else:
                do_save_limit(team, "team", "tokens_per_day", "300")
        # `releasing`: asgiref's threads are no request's; a pooled connection they kept would
        # be lost to the pool for good (three parameters took three of PostgreSQL's four).
        await sync_to_async(releasing(go), thread_sensitive=False)()
        if change == "create":  # a run under no budget looks for a new one at most this often
            await asyncio.sleep(BUDGETS_FRESH_S + 0.1)
        return "tightened"

    box = InProcessToolbox(grants={"boss": ["t__tighten"]})
    box.register("t__tighten", tighten, "Tighten the budget", {"type": "object", "properties": {}})

    run = execute(start(pipeline(team, SPEC)), box)

    assert Limit.objects.get(team=team).value in (Decimal(300), Decimal("0.3"))  # the tool did change it

    spent = sum(u.input_tokens + u.output_tokens for u in UsageRecord.objects.filter(team=team))
    assert spent <= 300, f"{spent} tokens spent today under a budget of 300 ({run.status})"

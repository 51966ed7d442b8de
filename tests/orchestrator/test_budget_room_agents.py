"""Resuming a budget-stopped run with a raised budget was refused because of a budget that does
not apply to the run at all: `budget_blocker` asked `remaining` of every agent budget of the
team (budgets_for_run), not only the stopped step's agent's (found by a review)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from orchestrator.actions import do_decide_review
from orchestrator.models import Limit
from tests.conftest import execute, pipeline, scripted, start

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_budget_of_an_agent_the_run_never_uses_does_not_block_its_resume(team, owner):
    scripted(team, "w", {"text": "y" * 400})
    unrelated = scripted(team, "unrelated", {"text": "z" * 400})
    Limit.objects.create(team=team, scope="agent", agent=unrelated, kind="tokens_per_day", value=Decimal(20))
    # The other agent's day is used up by another pipeline.
    other = execute(start(pipeline(team, {"steps": [{"kind": "agent", "id": "u", "agent": "unrelated",
                                                     "prompt": "x" * 40}]}, name="other")))
    assert other.input_tokens + other.output_tokens == 20  # its budget is used up
    spec = {"limits": {"max_tokens": 150},
            "steps": [{"kind": "agent", "id": f"s{i}", "agent": "w", "prompt": "x" * 40} for i in range(3)]}
    run = execute(start(pipeline(team, spec)))
    assert run.status == "waiting_review"
    item = run.review_items.get()
    assert item.reason == "budget"

    do_decide_review(item, owner, "resume", raise_budget={"max_tokens": 10_000}, submit=False)
    run = execute(run)
    assert run.status == "succeeded"


def test_the_stopped_agents_own_budget_still_blocks_its_resume(team, owner):
    from orchestrator.actions.errors import Conflict

    worker = scripted(team, "w", {"text": "y" * 400})
    Limit.objects.create(team=team, scope="agent", agent=worker, kind="tokens_per_day", value=Decimal(150))
    spec = {"steps": [{"kind": "agent", "id": f"s{i}", "agent": "w", "prompt": "x" * 40} for i in range(3)]}
    run = execute(start(pipeline(team, spec)))
    assert run.status == "waiting_review"
    item = run.review_items.get()
    assert item.reason == "budget"
    with pytest.raises(Conflict, match="budget of the agent"):
        do_decide_review(item, owner, "resume", submit=False)

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


# -- found by a review ----------------------------------------------------------------------

_BRANCHES = {"limits": {"max_tokens": 300},
             "steps": [{"kind": "parallel", "id": "p", "on_branch_failure": "continue",
                        "branches": [{"kind": "agent", "id": f"b{i}", "agent": "wide", "prompt": "x" * 40} for i in range(4)]}]}


@pytest.mark.parametrize("with_team_budget", [False, True], ids=["run-budget-only", "with-a-team-budget"])
def test_parallel_branches_keep_within_the_runs_own_budget_whatever_else_applies(team, with_team_budget):
    """Each branch held its room only after its team reservation came back from the database:
    meanwhile the others saw none held and each took the whole run budget (1,200 tokens spent
    of 300 with a team budget; exactly 300 without)."""
    from orchestrator.models import Limit, UsageRecord
    from tests.conftest import execute

    scripted(team, "wide", {"text": "y" * 2000})  # wants ~500 output tokens
    if with_team_budget:
        Limit.objects.create(team=team, scope="team", kind="tokens_per_day", value=Decimal(1_000_000))
    run = execute(start(pipeline(team, _BRANCHES, name="branches")))
    assert run.input_tokens + run.output_tokens <= 300, [u.input_tokens + u.output_tokens for u in UsageRecord.objects.filter(run=run)]


@pytest.mark.parametrize("where", ["team", "run"])
def test_a_dollar_budget_on_an_unpriced_model_stops_the_call_with_a_clear_error(team, where):
    """Unpriced, every call cost $0 and a dollar budget never stopped anything."""
    from orchestrator.models import Limit, UsageRecord
    from tests.conftest import execute

    scripted(team, "free", {"text": "y" * 400})
    spec = {"steps": [{"kind": "agent", "id": "s", "agent": "free", "prompt": "go"}]}
    if where == "team":
        Limit.objects.create(team=team, scope="team", kind="usd_per_day", value=Decimal("0.0001"))
    else:
        spec["limits"] = {"max_cost_usd": 0.0001}
    from orchestrator.models import StepRun

    run = execute(start(pipeline(team, spec, name=f"unpriced-{where}")))
    step = StepRun.objects.get(run=run)
    assert run.status == "waiting_review" and "has no price" in step.error, (run.status, step.error)
    assert not UsageRecord.objects.filter(run=run).exists()  # no call was made


def test_a_budget_turned_into_another_unit_or_moved_to_another_agent_counts_afresh(team):
    """Edited in place, a limit kept its day's counter: 300 tokens read as 300 micro-dollars
    after a switch to dollars ($0.649 spent against $0.35), another agent's use counted as
    this one's."""
    from orchestrator.actions.limits import do_save_limit
    from orchestrator.models import ModelPrice

    scripted(team, "w", {"text": "y" * 400})
    ModelPrice.objects.create(provider="scripted", model="scripted-1", input_per_mtok=Decimal(1000),
                              output_per_mtok=Decimal(1000))
    spec = {"steps": [{"kind": "agent", "id": f"s{i}", "agent": "w", "prompt": PROMPT} for i in range(5)]}
    limit = Limit.objects.create(team=team, scope="team", kind="tokens_per_day", value=Decimal(300))
    execute(start(pipeline(team, spec, name="tokens")))
    dollars = do_save_limit(team, "team", "usd_per_day", "0.35", limit=limit)
    assert dollars.pk != limit.pk and not Limit.objects.filter(pk=limit.pk).exists()  # another limit now
    execute(start(pipeline(team, spec, name="dollars")))
    spent = sum((u.cost_usd for u in UsageRecord.objects.filter(team=team)), Decimal(0))
    assert spent <= Decimal("0.35"), spent
    assert BudgetCounter.objects.get(limit=dollars).used == int(spent * 1_000_000)


def test_a_budget_moved_to_another_agent_leaves_runs_claimed_before_the_move_alone(team):
    """A run claimed before the move kept applying the budget to the first agent, and seeded
    the moved budget's counter with that agent's use."""
    from orchestrator.actions.limits import do_save_limit
    from orchestrator.budgets import applicable, budgets_for_run, remaining
    from orchestrator.models import Run

    a, b = scripted(team, "a", {"text": "ok"}), scripted(team, "b", {"text": "ok"})
    run = execute(start(pipeline(team, {"steps": [{"kind": "agent", "id": "s", "agent": "a", "prompt": "x"}]})))
    limit = Limit.objects.create(team=team, scope="agent", agent=a, kind="tokens_per_day", value=Decimal(100_000))
    claimed = budgets_for_run(team.pk, Run.objects.get(pk=run.pk).pipeline_version.pipeline_id)
    moved = do_save_limit(team, "agent", "tokens_per_day", "100000", target_id=b.pk, limit=limit)
    assert remaining(applicable(claimed, a.pk)) == {"tokens": None, "usd": None}  # no longer a's budget
    assert not BudgetCounter.objects.filter(limit=moved).exists() or BudgetCounter.objects.get(limit=moved).used == 0


@pytest.mark.parametrize(("scope", "kind"), [("api_key", "tokens_per_day"), ("user", "usd_per_month"),
                                             ("pipeline", "requests_per_minute")])
def test_a_limit_that_would_never_be_kept_is_refused(team, owner, scope, kind):
    from mcpgateway.actions.access import do_create_api_key
    from orchestrator.actions.errors import ActionError
    from orchestrator.actions.limits import do_save_limit

    targets = {"api_key": lambda: do_create_api_key(team.pk, "k", owner)[0].pk, "user": lambda: owner.pk,
               "pipeline": lambda: pipeline(team, {"steps": [{"kind": "agent", "id": "s", "agent": "w", "prompt": "x"}]}).pk}
    if scope == "pipeline":
        scripted(team, "w", {"text": "ok"})
    with pytest.raises(ActionError, match="is kept per") as refused:
        do_save_limit(team, scope, kind, "100", target_id=targets[scope]())
    assert refused.value.field == "scope"
    assert not Limit.objects.filter(team=team).exists()


def test_a_budget_lowered_or_removed_while_a_run_holds_it_applies_to_its_next_call(team):
    """A run reads its budgets when it is claimed; a limit lowered meanwhile held only for runs
    claimed after the change (a run went on to spend 584 tokens of a budget lowered to 200)."""
    from orchestrator.budgets import BudgetExceeded, budgets_for_run, remaining, reserve
    from orchestrator.models import Run

    scripted(team, "w", {"text": "ok"})
    run = start(pipeline(team, {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "x"}]}, name="held"))
    Run.objects.filter(pk=run.pk).update(status="running", lease_owner="me")
    limit = Limit.objects.create(team=team, scope="team", kind="tokens_per_day", value=Decimal(1_000_000))
    claimed = budgets_for_run(team.pk, run.pipeline_version.pipeline_id)  # as the claim read them
    Limit.objects.filter(pk=limit.pk).update(value=Decimal(200))
    assert remaining(claimed)["tokens"][0] == 200
    with pytest.raises(BudgetExceeded):
        reserve(claimed, 400, 0, run_id=run.pk, lease_owner="me")
    reserve(claimed, 150, 0, run_id=run.pk, lease_owner="me")
    limit.delete()  # removed: nothing left to keep
    assert reserve(claimed, 5000, 0, run_id=run.pk, lease_owner="me").rows == []


def test_an_agents_model_call_rate_is_a_limit_that_is_kept(team):
    """Per agent, `requests_per_minute` paces its model calls (the model door waits for a slot)."""
    from orchestrator.actions.limits import do_save_limit

    agent = scripted(team, "paced", {"text": "ok"})
    assert do_save_limit(team, "agent", "requests_per_minute", "7", target_id=agent.pk).value == 7

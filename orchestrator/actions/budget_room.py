"""Whether a run stopped by a budget has room to go on, before anyone resumes it.

A run paused because a budget was reached pauses again at its first model call unless the
budget was raised (the run's own limit, or the team's, pipeline's or agent's) or a new
period began. Resuming it then only looks like progress; `check_budget_room` refuses
instead, naming the budget and what to do.
"""

from __future__ import annotations

import re
from decimal import Decimal

from orchestrator.actions.errors import Conflict
from orchestrator.models import Agent, ReviewItem, ReviewReason, Run, StepRun

_ABOUT = re.compile(r"about (\d+) input tokens")


def budget_pause(run: Run) -> ReviewItem | None:
    """The review item of the run's latest pause, if that pause was a budget stop."""
    latest = ReviewItem.objects.filter(run_id=run.pk).order_by("-id").first()
    return latest if latest is not None and latest.reason == ReviewReason.BUDGET else None


def budget_blocker(run: Run) -> str:
    """Why the run would stop at its budget again right away ("" when it has room)."""
    from orchestrator import budgets
    from orchestrator.engine.spec import Limits, parse_spec

    pause = budget_pause(run)
    if pause is None:
        return ""
    match = _ABOUT.search(str((pause.context or {}).get("error", "")))
    needed = int(match.group(1)) if match else 1
    spec_limits = parse_spec(run.pipeline_version.spec).limits.model_dump(exclude_none=True)
    limits = Limits.model_validate({**spec_limits, **(run.limits or {})})
    used = run.input_tokens + run.output_tokens
    if limits.max_tokens is not None and limits.max_tokens - used < needed:
        return f"the run's token budget is used up ({used} of {limits.max_tokens} tokens)"
    if limits.max_cost_usd is not None and run.cost_usd >= Decimal(str(limits.max_cost_usd)):
        return f"the run's cost budget is used up (${run.cost_usd:.4f} of ${limits.max_cost_usd})"
    # The budgets of the stopped step's agent, the pipeline and the team: another agent's
    # budget, out of room, refused the resume of a run that never calls that agent.
    agent_name = StepRun.objects.filter(run_id=run.pk, key=pause.step_key).values_list("agent_name", flat=True).first()
    agent_id = Agent.objects.filter(team_id=run.team_id, name=agent_name).values_list("pk", flat=True).first() \
        if agent_name else None
    left = budgets.remaining(budgets.applicable(budgets.budgets_for_run(run.team_id, run.pipeline_version.pipeline_id),
                                                agent_id))
    for unit, found in left.items():
        if found is None:
            continue
        room, budget = found
        if room < (needed if unit == "tokens" else 1):
            return f"the {budget.label} has no room left"
    return ""


def check_budget_room(run: Run) -> None:
    """Refuse to resume a budget-stopped run that would stop again at once (Conflict)."""
    blocker = budget_blocker(run)
    if blocker:
        raise Conflict(f"run {run.pk} stopped at its budget and {blocker}: resuming now would pause it again "
                       "at once. Raise the budget first (“Raise the run's budget” when deciding its review "
                       "item, or the team's limits), or wait for the next budget period.", "budget")

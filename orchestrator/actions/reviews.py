"""Review decisions (a human approves, edits, retries or rejects a paused step) and who takes them on."""

from __future__ import annotations

import json
import math
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from mcpgateway.actions.approvals import do_decide_approval
from mcpgateway.redaction import get_redactor
from orchestrator.actions.errors import ActionError, Conflict
from orchestrator.actions.runs import do_resume_run
from orchestrator.engine.document_guard import scan_data
from orchestrator.events import send_event_on_commit
from orchestrator.models import Membership, ReviewItem, ReviewReason, Role, Run

ACTIONS = {
    "approve": "continue; with `output`, the step's output is replaced by it",
    "reject": "fail the step (and so the run)",
    "retry": "run the step again as a new attempt",
    "resume": "continue the same attempt from its last completed call (after a budget stop)",
    "skip": "an interrupted tool call: treat it as failed (the model is told it may or may not have run)",
    "edit_result": "an interrupted tool call: continue with `output` as its result",
}
# For a call a crash interrupted ("this call may have run"): what each action does to it.
CALL_ACTIONS = {"retry": "retry", "skip": "skip", "edit_result": "edit"}


def do_decide_review(item: ReviewItem, user: AbstractBaseUser | None, action: str, output: Any = None,
                     note: str = "", raise_budget: dict[str, Any] | None = None, submit: bool = True,
                     api_key_id: int | None = None) -> ReviewItem:
    """Decide a pending item. `api_key_id`: the key a service account (no user) decided with,
    recorded in the decision and on the run's trace so that such a decision names its decider."""
    if action not in ACTIONS:
        raise ActionError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}", "action")
    if action == "reject" and not (note or "").strip():
        # A rejection discards the step's work (and usually fails the run): it says why.
        raise ActionError("a rejection needs its reason in `note`", "note")
    if action in ("retry", "resume") and item.context.get("kind") not in ("agent", None):
        raise ActionError(f"{action} applies to agent steps only", "action")
    if raise_budget:
        _check_raised_budget(item, raise_budget)
    decision: dict[str, Any] = {"action": action, "note": note}
    problem = scan_data(output) if output is not None else None
    if problem is not None:  # (an API body's NaN: stored, it failed the decision's commit)
        raise ActionError(f"output{'.' + problem.path if problem.path else ''}: {problem.message}", "output")
    if output is not None:
        join = item.context.get("join") if item.context.get("kind") == "parallel" else None
        if join:
            # Its join step runs next, from the branches' own outputs: an edit here would be
            # stored and never used (it used to be, silently).
            raise ActionError(f"this parallel step goes on into its join step {join!r}, which reads the branches: "
                              "approve without an output (the join's answer can be edited when it is reviewed)", "output")
        decision["output"] = output
    interrupted = item.context.get("interrupted_call")
    if action in ("skip", "edit_result") and not interrupted:
        raise ActionError(f"{action} applies to an interrupted tool call only", "action")
    if interrupted and action in CALL_ACTIONS:
        decision = check_call_decision(interrupted, action, output, note)
    if item.reason == ReviewReason.APPROVAL:
        if action not in ("approve", "reject"):
            raise ActionError("a tool-call approval is approved or rejected", "action")
        if output is not None:
            # The call runs with the arguments the reviewer was shown, or not at all: an edit
            # was answered 200 and dropped (a review), so the reviewer believed the call changed.
            raise ActionError("a tool-call approval cannot change the call: approve it as shown, or reject it "
                              "(the model is told why, and may call again)", "output")
        # The gateway learns the verdict; the step continues its attempt either way and the
        # model sees the tool's result, or the refusal as an error result.
        decision = {"action": "resume", "note": note, "approved": action == "approve"}
    if user is None and api_key_id is not None:
        decision["api_key"] = api_key_id
    with transaction.atomic():
        # The run first, then its item: a cancel takes them in that order, and the other
        # order deadlocked with it on PostgreSQL (one of the two got a 500).
        Run.objects.select_for_update().filter(pk=item.run_id).first()
        locked = ReviewItem.objects.select_for_update().get(pk=item.pk)
        if locked.status != ReviewItem.Status.PENDING:
            raise Conflict(f"review item {item.pk} was already decided ({locked.status})")
        locked.status = ReviewItem.Status.REJECTED if action == "reject" else ReviewItem.Status.APPROVED
        locked.decision = get_redactor(locked.team_id).redact(decision)  # a reviewer's edit may repeat a secret
        locked.decided_by = user
        locked.decided_at = timezone.now()
        locked.save(update_fields=["status", "decision", "decided_by", "decided_at"])
        run = Run.objects.get(pk=locked.run_id)
        if item.reason == ReviewReason.APPROVAL:
            do_decide_approval(locked.context["approval_id"], action == "approve", user, note)
        if raise_budget:
            run.limits = {**(run.limits or {}), **raise_budget}
            Run.objects.filter(pk=run.pk).update(limits=run.limits)
        by = user.get_username() if user else f"api key #{api_key_id}" if api_key_id is not None else None
        send_event_on_commit(run, "review.decided", {"review_id": locked.pk, "action": action, "note": note,
                                                     "by": by}, locked.step_key)
        if not run.review_items.filter(status=ReviewItem.Status.PENDING).exists() and run.status == "waiting_review":
            # Only a decision that makes the step call its model again needs budget room;
            # rejecting or giving the step its output does not. A rejected step ends the run (no
            # slot needed); a rejected tool-call approval does not: the step goes on, the model
            # told of the refusal (it bypassed the concurrent-runs limit: a review).
            ends = action == "reject" and item.reason != ReviewReason.APPROVAL
            do_resume_run(run, user, submit=submit, check_budget=action in ("resume", "retry"), check_concurrency=not ends)
        # A decision taken while the run still runs (a parallel branch paused; its sibling has
        # not ended) resumes nothing here: the run does when it pauses (`execution.py`).
    return locked


def _check_raised_budget(item: ReviewItem, raise_budget: dict[str, Any]) -> None:
    """A raised budget is the run's limits as the spec writes them (`max_tokens` ≥ 1,
    `max_cost_usd` > 0), checked before it is saved: a run whose stored limits no longer load
    failed at its next claim, and no action could repair it."""
    from pydantic import ValidationError

    from orchestrator.engine.spec import Limits

    run = Run.objects.filter(pk=item.run_id).first()
    current = dict(run.limits or {}) if run is not None else {}
    try:
        Limits.model_validate({**current, **raise_budget}, strict=False)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem.get("loc", ())) or "raise_budget"
        raise ActionError(f"raise_budget.{where}: {problem.get('msg', 'invalid')}", "raise_budget") from None
    for key, value in raise_budget.items():
        if not isinstance(value, bool) and not math.isfinite(float(value)):  # 1e400: finite as a Decimal, not as JSON
            raise ActionError(f"raise_budget.{key}: a finite number", "raise_budget")
        if isinstance(value, bool) or (key == "max_tokens" and not float(value).is_integer()):
            raise ActionError(f"raise_budget.{key}: a whole number of tokens", "raise_budget")


def check_call_decision(interrupted: dict[str, Any], action: str, output: Any, note: str) -> dict[str, Any]:
    """The decision about a call that may have run: the step resumes its attempt, and the call
    is made again with the same idempotency key (retry), recorded as failed (skip), or given
    the reviewer's result (edit_result)."""
    if action == "edit_result" and (output is None or output == ""):
        raise ActionError("edit_result needs the call's result in `output`", "output")
    call: dict[str, Any] = {"key": interrupted.get("idempotency_key", ""), "do": CALL_ACTIONS[action], "note": note}
    if action == "edit_result":
        call["result"] = output if isinstance(output, str) else json.dumps(output)
    return {"action": "resume", "note": note, "call": call}


def do_claim_review(item: ReviewItem, user: AbstractBaseUser) -> ReviewItem:
    """Assign a pending item to the reviewer who takes it on."""
    return do_assign_review(item, user, user)


def do_assign_review(item: ReviewItem, assignee: AbstractBaseUser | None, by: AbstractBaseUser | None) -> ReviewItem:
    """Hand a pending item to a teammate who may decide it (reviewer or above); None unassigns.

    Announced on the run (`review.claimed`), so the queue and the run's trace show who took it.
    """
    if assignee is not None:
        membership = Membership.objects.filter(team_id=item.team_id, user_id=assignee.pk).first()
        if membership is None:  # never echo a non-member's name: it would confirm the account exists
            raise ActionError("not a member of this team", "assignee")
        if not membership.has_role(Role.REVIEWER):
            raise ActionError(f"{assignee.get_username()} cannot decide reviews in this team (needs the reviewer role)",
                              "assignee")
    with transaction.atomic():
        Run.objects.select_for_update().filter(pk=item.run_id).first()  # (the run first: see do_decide_review)
        locked = ReviewItem.objects.select_for_update().get(pk=item.pk)
        if locked.status != ReviewItem.Status.PENDING:
            raise Conflict(f"review item {item.pk} was already decided ({locked.status})")
        locked.assigned_to = assignee
        locked.save(update_fields=["assigned_to"])
        run = Run.objects.get(pk=locked.run_id)
        send_event_on_commit(run, "review.claimed", {
            "review_id": locked.pk,
            "assignee": assignee.get_username() if assignee else None,
            "by": by.get_username() if by else None,
        }, locked.step_key)
    return locked

"""Starting, cancelling, resuming and failing runs."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from config.tracing import current_traceparent
from orchestrator import lease_clock
from orchestrator.actions.errors import ActionError, Conflict
from orchestrator.budgets import release_run
from orchestrator.engine.document_guard import scan_data
from orchestrator.engine.spec import PipelineSpec, has_input_type, parse_spec
from orchestrator.events import send_event_on_commit
from orchestrator.models import ACTIVE_RUN_STATUSES, PipelineVersion, Run, RunStatus, Team
from orchestrator.runners import get_runner

log = logging.getLogger(__name__)

CANCEL_NOTE = "run cancelled"  # the decision note of the reviews a cancel closed


def check_run_input(spec: PipelineSpec, data: Any) -> dict[str, Any]:
    """The run input with defaults applied; raises ActionError naming the bad field."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ActionError("the run input must be a JSON object", "input")
    problem = scan_data(data)
    if problem is not None:
        raise ActionError(f"input.{problem.path}: {problem.message}" if problem.path else problem.message, "input")
    result = dict(data)
    for name, field in spec.inputs.items():
        if name not in result:
            if field.default is not None:
                result[name] = field.default
            elif field.required:
                raise ActionError(f"input {name!r} is required", f"input.{name}")
            continue
        value = result[name]
        if not has_input_type(value, field.type):
            raise ActionError(f"input {name!r} must be of type {field.type}", f"input.{name}")
    return result


def do_start_run(version: PipelineVersion, run_input: Any, user: AbstractBaseUser | None = None,
                 submit: bool = True, api_key_id: int | None = None) -> Run:
    """Create a queued run pinned to `version`; hand it to the runner once committed.

    Raises RateLimited while a concurrent-runs limit of the team, user, key, agent or
    pipeline is reached.
    """
    from orchestrator.limits import check_concurrent_runs

    spec = parse_spec(version.spec)
    checked = check_run_input(spec, run_input)
    with transaction.atomic():
        Team.objects.select_for_update().filter(pk=version.pipeline.team_id).first()  # one start at a time per team
        check_concurrent_runs(version, user.pk if user else None, api_key_id)
        run = Run.objects.create(team_id=version.pipeline.team_id, pipeline_version=version, input=checked,
                                 created_by=user, api_key_id=api_key_id, limits=spec.limits.model_dump(exclude_none=True),
                                 trace_context=current_traceparent())
        send_event_on_commit(run, "run.queued", {"pipeline": version.pipeline.slug, "version": version.number,
                                                 "by": user.get_username() if user else None})
        if submit:
            # After the commit the run exists whatever happens to the hand-off: a runner that
            # cannot reach its broker keeps the run queued and dispatches it once it can
            # (orchestrator.runners.celery), and beat's sweep catches what a dead process left.
            transaction.on_commit(lambda: get_runner().submit(run.pk), robust=True)
    return run


def do_cancel_run(run: Run, user: AbstractBaseUser | None = None, reason: str = "") -> Run:
    """Stop a run: in-flight steps are cancelled, nothing further starts. `reason` is recorded.

    A run nothing is executing (queued, waiting for a review, or running with no live lease:
    handed back at a worker's shutdown, or its worker died) is finished here; a run a worker
    holds is finished by that worker, which sees the flag at its next commit."""
    with transaction.atomic():
        locked = Run.objects.select_for_update().select_related("pipeline_version").get(pk=run.pk)
        if locked.is_finished:
            raise Conflict(f"run {run.pk} has already {locked.status}")
        Run.objects.filter(pk=run.pk).update(cancel_requested=True)
        send_event_on_commit(run, "run.cancel_requested", {"by": user.get_username() if user else None,
                                                           **({"reason": reason[:2000]} if reason else {})})
        if locked.status in (RunStatus.QUEUED, RunStatus.WAITING_REVIEW) or unheld(locked):
            _finish_cancelled(locked)
        transaction.on_commit(lambda: get_runner().cancel(run.pk))
    run.refresh_from_db()
    return run


def unheld(run: Run) -> bool:
    """Whether a running run has no live lease (nobody is executing it: no owner, or its lease
    ran out). Claims take such a run over, unless a cancel was requested."""
    return run.status == RunStatus.RUNNING and (
        not run.lease_owner or run.lease_until is None or run.lease_until < lease_clock.now())


def _finish_cancelled(locked: Run) -> None:
    """End a run nobody executes as cancelled, in the caller's transaction (which holds its
    row): its open steps and pending reviews closed, its lease and budget room let go, its
    `run.cancelled` event and webhook written."""
    from orchestrator import webhooks
    from orchestrator.models import StepRun, StepStatus

    now = timezone.now()
    StepRun.objects.filter(run_id=locked.pk, status=StepStatus.RUNNING).update(
        status=StepStatus.CANCELLED, finished_at=now, error="cancelled")
    close_pending_reviews(locked.pk)
    Run.objects.filter(pk=locked.pk).update(status=RunStatus.CANCELLED, finished_at=now, error="cancelled",
                                            cancel_requested=True, lease_owner="", lease_until=None)
    release_run(locked.pk)
    send_event_on_commit(locked, "run.cancelled", {})
    webhooks.enqueue(locked.pipeline_version.pipeline_id, "run.cancelled",
                     {"run_id": locked.pk, "status": "cancelled", "output": None, "error": "cancelled"})


def close_pending_reviews(run_id: int) -> None:
    """A cancelled run's pending review items rejected with the cancel's note, and the tool-call
    approvals it waited on rejected (each refused call audited), in the caller's transaction.
    Both cancel paths: a run nobody holds (`_finish_cancelled`), and one its worker ends (the
    store's cancelled commit; it left the items pending and decidable: a review)."""
    from mcpgateway.actions.approvals import reject_run_approvals
    from orchestrator.models import ReviewItem

    ReviewItem.objects.filter(run_id=run_id, status=ReviewItem.Status.PENDING).update(
        status=ReviewItem.Status.REJECTED, decision={"action": "reject", "note": CANCEL_NOTE}, decided_at=timezone.now())
    reject_run_approvals(run_id, CANCEL_NOTE)


def finish_unheld_cancels() -> list[int]:
    """Finish, as cancelled, the running runs whose cancel was requested and that nobody is
    executing any more (their lease ran out: the worker died, or handed them back at its
    shutdown before the cancel came). No claim takes a cancel-requested run, so without this
    they would stay running. Beat's stuck-runs sweep calls it. Returns their ids."""
    finished = []
    candidates = Run.objects.filter(status=RunStatus.RUNNING, cancel_requested=True, lease_until__lt=lease_clock.now())
    for run_id in candidates.order_by("id").values_list("pk", flat=True):
        with transaction.atomic():
            locked = Run.objects.select_for_update().select_related("pipeline_version").filter(pk=run_id).first()
            if locked is not None and locked.cancel_requested and unheld(locked):  # (still: checked under the lock)
                _finish_cancelled(locked)
                finished.append(run_id)
    return finished


def do_resume_run(run: Run, user: AbstractBaseUser | None = None, submit: bool = True,
                  check_budget: bool = True, check_concurrency: bool = True) -> Run:
    """Continue a run from its last persisted point (after a crash, or once reviews are decided).
    `check_concurrency=False` where the run only goes on to end (a rejected review)."""
    with transaction.atomic():
        locked = Run.objects.select_for_update().get(pk=run.pk)
        if locked.status in (RunStatus.SUCCEEDED, RunStatus.CANCELLED):
            raise Conflict(f"run {run.pk} has {locked.status}; it cannot be resumed")
        if locked.review_items.filter(status="pending").exists():
            raise Conflict(f"run {run.pk} still has undecided review items")
        if locked.status == RunStatus.RUNNING and locked.lease_until is not None and locked.lease_until >= lease_clock.now():
            # Held by a live lease: its holder is executing it, or died and the stuck-runs sweep
            # sends it on once the lease runs out (running, lease expired). Nothing to change:
            # set queued, it lost its holder's lease renewals (they renew running rows only),
            # and once the lease ran out another worker took it over while the first still ran
            # it — two executions at once, its model call made twice (found by a review).
            send_event_on_commit(run, "run.resume_requested", {"by": user.get_username() if user else None,
                                                                 "held_by": locked.lease_owner})
            run.refresh_from_db()
            return run
        if check_budget:
            from orchestrator.actions.budget_room import check_budget_room

            check_budget_room(locked)  # a budget stop with no new room would only pause again
        if check_concurrency and locked.status not in ACTIVE_RUN_STATUSES:
            # It becomes active again: counted against the concurrent-runs limits as a start is
            # (the team row locked, so two resumes or a start and a resume cannot both pass).
            from orchestrator.limits import check_concurrent_runs

            Team.objects.select_for_update().filter(pk=locked.team_id).first()
            check_concurrent_runs(locked.pipeline_version, locked.created_by_id, locked.api_key_id)
        fields: dict[str, Any] = {"status": RunStatus.QUEUED, "finished_at": None, "error": "",
                                  "dispatched_at": timezone.now()}
        # Nobody holds a run that stopped, or a running one whose lease ran out (its worker
        # died): a lease left on it (a run failed at its claim kept its claimant's) would make
        # the claim take it for held. (A live lease returned above.)
        fields.update(lease_owner="", lease_until=None)
        if locked.lease_owner:
            # What its last holder reserved and never settled: a claim with no owner to take
            # over from gives nothing back, so it would wait for the sweep.
            release_run(locked.pk)
        Run.objects.filter(pk=run.pk).update(**fields)
        send_event_on_commit(run, "run.resume_requested", {"by": user.get_username() if user else None})
        if submit:
            transaction.on_commit(lambda: get_runner().submit(run.pk))
    run.refresh_from_db()
    return run


def do_fail_run(run_id: int, error: str, owner: str | None = None) -> bool:
    """Record that executing a run crashed outside the engine's own handling.

    Ends it cleanly: its open steps are closed as failed, its lease is released, and its
    `run.failed` event and webhook are written in the same transaction. With `owner` (the
    lease owner whose execution crashed), only while the run is still that owner's (or running
    and nobody's): a worker whose lease ran out and whose run another worker took over must not
    fail the run the other is executing, nor one that stopped meanwhile (paused for a review).
    Returns whether the run was failed.
    """
    from mcpgateway.redaction import get_redactor
    from orchestrator import webhooks
    from orchestrator.models import StepRun, StepStatus

    with transaction.atomic():
        run = Run.objects.select_for_update().select_related("pipeline_version").get(pk=run_id)
        if run.is_finished:
            return False
        if owner is not None and not (run.lease_owner == owner or (run.lease_owner == "" and run.status == RunStatus.RUNNING)):
            # Another worker took it over, or it stopped (paused for a review, handed back and
            # queued again): not this execution's to fail any more.
            log.warning("run %s: not failed for %s's crash (%s): it is %s, held by %s", run_id, owner, error,
                        run.status, run.lease_owner or "nobody")
            return False
        now = timezone.now()
        # (An internal error's text may quote a secret: the run's error, its steps' and its
        # webhook's payload are redacted as its event is; they were stored raw: a review.)
        error = get_redactor(run.team_id).text(error)
        StepRun.objects.filter(run_id=run_id, status=StepStatus.RUNNING).update(
            status=StepStatus.FAILED, error=f"run ended: {error}"[:2000], finished_at=now)
        Run.objects.filter(pk=run_id).update(status=RunStatus.FAILED, error=error, finished_at=now,
                                             lease_owner="", lease_until=None)
        release_run(run_id)  # budget room held for calls it never finished
        send_event_on_commit(run, "run.failed", {"error": error})
        webhooks.enqueue(run.pipeline_version.pipeline_id, "run.failed",
                         {"run_id": run_id, "status": "failed", "output": None, "error": error})
    return True


def stuck_runs(queued_for_s: int | None = None):
    """Runs no live worker is executing: running with an expired lease (the worker died), or
    queued for longer than `queued_for_s` (settings.STUCK_QUEUED_S) since they were created or
    last sent (`dispatched_at`: a resume, an earlier sweep) without anyone claiming them (a
    lost message, or a process that died before the broker came back) — so a backlog that
    waits for busy workers is not sent again on every sweep."""
    from datetime import timedelta

    from django.conf import settings
    from django.db.models import Q

    if queued_for_s is None:
        queued_for_s = settings.STUCK_QUEUED_S
    now = timezone.now()
    leases_now = lease_clock.now()  # (leases are of the database's clock: `lease_clock`)
    cutoff = now - timedelta(seconds=queued_for_s)
    waited = Q(dispatched_at__isnull=True, created_at__lt=cutoff) | Q(dispatched_at__lt=cutoff)
    return Run.objects.filter(
        Q(status=RunStatus.RUNNING, lease_until__lt=leases_now)
        | (Q(status=RunStatus.QUEUED, lease_owner="") & waited)
        # Queued again while its lease was still live (resumed while a worker held it): the
        # resume's message found it held and was done with; once the lease runs out, only
        # this sweep sends it on.
        | (Q(status=RunStatus.QUEUED, lease_until__lt=leases_now) & waited),
        cancel_requested=False,
    ).order_by("id")


def mark_dispatched(run_ids: list[int]) -> None:
    """The queued ones of these runs were sent to the workers now (see `stuck_runs`)."""
    if run_ids:
        Run.objects.filter(pk__in=run_ids, status=RunStatus.QUEUED).update(dispatched_at=timezone.now())

"""Celery tasks: thin wrappers that take ids and call the orchestrator. Safe to run twice:
a run's lease lets only one worker execute it at a time."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.exceptions import Reject

log = logging.getLogger(__name__)


# How often a task that found its run held looks again (seconds).
HELD_RECHECK_S = 2.0
# The longest wait before a task whose database failed tries again (seconds; doubling from
# HELD_RECHECK_S).
DATABASE_RETRY_MAX_S = 30.0


def _database_retry_s(retries: int) -> float:
    return min(HELD_RECHECK_S * 2 ** min(retries, 8), DATABASE_RETRY_MAX_S)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True, max_retries=None)
def execute_run_task(self, run_id: int, seen_lease: str | None = None) -> str:
    """Execute (or resume) a run to its next stop, on this process's shared event loop.

    The pool thread running this task waits while the run executes beside the process's other
    runs (`orchestrator.runners.worker_pool`); the message is acknowledged when the run stopped.
    If this worker shuts down first, the run's lease is handed back and the message requeued.

    If another process holds the run, the task looks again every couple of seconds until
    the holder proves alive by renewing its lease (then this copy was a duplicate) or the run
    becomes claimable: its holder died on this host, or its lease ran out. A task restored
    after a cold shutdown thus takes the run within seconds, not after the stuck-runs sweep.
    """
    from django.db import InterfaceError, OperationalError

    from orchestrator.runners import worker_pool

    try:
        stop = worker_pool.execute(run_id)
    except (OperationalError, InterfaceError) as exc:
        # The database failed (a restart, a blip, no pooled connection in time), e.g. as the
        # run was claimed: try again shortly. Raised, the message was acknowledged as done and
        # the run sat queued until the stuck-runs sweep, a minute or more (found by a review).
        # Safe twice: the run's lease lets one execution at a time take it.
        countdown = _database_retry_s(self.request.retries)
        log.warning("run %s: the database failed (%s); trying again in %.0f s", run_id, exc, countdown)
        raise self.retry(args=[run_id, seen_lease], countdown=countdown, exc=exc) from exc
    if stop.handed_back:
        raise Reject(f"run {run_id} handed back at shutdown", requeue=True)
    if stop.status is not None:
        return stop.status
    if stop.held_lease is None:
        return "not claimed"
    if seen_lease is not None and stop.held_lease != seen_lease:
        return "held by a live worker"  # it renewed its lease since we last looked
    raise self.retry(args=[run_id, stop.held_lease], countdown=HELD_RECHECK_S)


@shared_task(ignore_result=True)
def requeue_stuck_runs_task() -> int:
    """Hand runs whose worker died (lease expired) back to the workers; finish the cancelled
    ones among them."""
    from django.db import transaction

    from orchestrator.actions.runs import finish_unheld_cancels, mark_dispatched, stuck_runs
    from orchestrator.budgets import release_orphaned

    with transaction.atomic():
        if released := release_orphaned():
            log.warning("gave back %d budget reservation(s) whose worker no longer holds the run", released)
    if cancelled := finish_unheld_cancels():  # no claim takes these: finished here, not requeued
        log.warning("finished %d cancelled run(s) nobody was executing: %s", len(cancelled), ", ".join(map(str, cancelled)))
    runs = list(stuck_runs())
    mark_dispatched([run.pk for run in runs])  # (before the messages: a worker may take one at once)
    for run in runs:
        execute_run_task.delay(run.pk)
    if runs:
        log.warning("requeued %d stuck run(s): %s", len(runs), ", ".join(str(r.pk) for r in runs))
    from orchestrator.evals.resume import stuck_eval_runs

    eval_runs = list(stuck_eval_runs())  # their process died: resume them (finished cases are kept)
    for eval_run in eval_runs:
        execute_eval_task.delay(eval_run.pk)
    if eval_runs:
        log.warning("requeued %d stuck eval run(s): %s", len(eval_runs), ", ".join(str(e.pk) for e in eval_runs))
    return len(runs) + len(eval_runs)


@shared_task(ignore_result=True)
def start_scheduled_run_task(schedule_id: int) -> int | None:
    """Beat's entry point for a pipeline schedule."""
    from orchestrator.actions.schedules import do_start_scheduled_run

    run = do_start_scheduled_run(schedule_id)
    return run.pk if run else None


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def execute_eval_task(eval_run_id: int) -> str:
    """Run (or resume) an eval run's cases on this worker's shared loop (its runs execute here,
    through the gateway); a shutdown hands it back and requeues its message. Safe to run
    twice: the eval run's lease lets one process at a time run it."""
    from orchestrator.runners import worker_pool

    stop = worker_pool.execute_eval(eval_run_id)
    if stop.handed_back:
        raise Reject(f"eval run {eval_run_id} handed back at shutdown", requeue=True)
    return stop.status or "not claimed"


@shared_task(ignore_result=True)
def deliver_webhooks_task() -> int:
    """Beat's entry point: send due webhook deliveries from a worker (the web process sends too)."""
    from orchestrator.webhooks import deliver_due

    return deliver_due()

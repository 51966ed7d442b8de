"""Celery tasks: thin wrappers that take ids and call the orchestrator. Safe to run twice:
a run's lease lets only one worker execute it at a time."""

from __future__ import annotations

import asyncio
import logging

from celery import shared_task

from orchestrator.execution import execute_run

log = logging.getLogger(__name__)


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def execute_run_task(run_id: int) -> str:
    """Execute (or resume) a run to its next stop; a no-op if another worker holds it."""
    outcome = asyncio.run(execute_run(run_id))
    return outcome.status if outcome else "not claimed"


@shared_task(ignore_result=True)
def requeue_stuck_runs_task() -> int:
    """Hand runs whose worker died (lease expired) back to the workers."""
    from orchestrator.actions.runs import stuck_runs

    runs = list(stuck_runs())
    for run in runs:
        execute_run_task.delay(run.pk)
    if runs:
        log.warning("requeued %d stuck run(s): %s", len(runs), ", ".join(str(r.pk) for r in runs))
    return len(runs)


@shared_task(ignore_result=True)
def start_scheduled_run_task(schedule_id: int) -> int | None:
    """Beat's entry point for a pipeline schedule."""
    from orchestrator.actions.schedules import do_start_scheduled_run

    run = do_start_scheduled_run(schedule_id)
    return run.pk if run else None


@shared_task(ignore_result=True)
def execute_eval_task(eval_run_id: int) -> str:
    """Run an eval run's cases on this worker (its runs execute here, through the gateway)."""
    from orchestrator.evals.harness import execute_eval_run

    return asyncio.run(execute_eval_run(eval_run_id)).status

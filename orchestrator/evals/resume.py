"""Eval runs that survive their process: a lease, the stuck ones, and what is left to do.

An eval run is executed by one process at a time, which holds a lease on it and renews it
while it works. Without a migration this round the lease lives in `finished_at`: while an
eval run is `running`, `finished_at` is its lease expiry (set to the real end time when it
ends); the exact value doubles as the holder's token, so a renewal is a compare-and-set.
A process that dies stops renewing; once the lease has run out the eval run is *stuck* and
any process may claim it again (the stuck-runs sweep, `manage.py eval resume`). The new
holder continues: cases with a result are not run again, a case whose run was started
continues that same run (recorded by an `eval.case` event on it), the rest start.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from orchestrator import lease_clock
from orchestrator.models import EvalRun, EvalRunStatus, PipelineVersion, RunEvent

log = logging.getLogger(__name__)

CASE_EVENT = "eval.case"  # on a case's run: {"eval_run": id, "case": id, "name": ...}


class LeaseLost(Exception):
    """Another process took the eval run over (this one stalled past its lease)."""


def _expiry() -> datetime:
    return lease_clock.now() + timedelta(seconds=settings.RUN_LEASE_S)


def claim_eval_run(eval_run_id: int) -> datetime | None:
    """Take a queued eval run, or a running one whose lease ran out; the lease token, or None
    when it is finished or a live process holds it. Conditional, so only one claim wins."""
    now, until = lease_clock.now(), _expiry()
    if EvalRun.objects.filter(pk=eval_run_id, status=EvalRunStatus.QUEUED).update(
            status=EvalRunStatus.RUNNING, started_at=now, finished_at=until):
        return until
    expired = Q(finished_at__isnull=True) | Q(finished_at__lt=now)
    if EvalRun.objects.filter(expired, pk=eval_run_id, status=EvalRunStatus.RUNNING).update(finished_at=until):
        log.warning("eval run %s: its lease ran out (its process died); resuming it", eval_run_id)
        return until
    return None


def held_until(eval_run_id: int) -> datetime | None:
    """When the lease of a running eval run held by a live process runs out, else None."""
    until = EvalRun.objects.filter(pk=eval_run_id, status=EvalRunStatus.RUNNING).values_list(
        "finished_at", flat=True).first()
    return until if until is not None and until >= lease_clock.now() else None


def stuck_eval_runs(queued_for_s: int = 120) -> QuerySet[EvalRun]:
    """Eval runs no live process is executing: running with an expired lease, or queued for
    longer than `queued_for_s` (a lost message)."""
    now = timezone.now()
    return EvalRun.objects.filter(
        Q(status=EvalRunStatus.RUNNING) & (Q(finished_at__isnull=True) | Q(finished_at__lt=lease_clock.now()))
        | Q(status=EvalRunStatus.QUEUED, created_at__lt=now - timedelta(seconds=queued_for_s)),
    ).order_by("id")


def started_case_runs(eval_run_id: int, version: PipelineVersion) -> dict[int, int]:
    """{case id: run id} of the case runs this eval run started (finished or not)."""
    started: dict[int, int] = {}
    for run_id, data in RunEvent.objects.filter(type=CASE_EVENT, run__pipeline_version=version).values_list("run_id", "data"):
        if isinstance(data, dict) and data.get("eval_run") == eval_run_id:
            started.setdefault(data["case"], run_id)
    return started


class EvalLease:
    """This process's hold on an eval run: renewed in the background until released."""

    def __init__(self, eval_run_id: int, token: datetime):
        self.eval_run_id = eval_run_id
        self.token = token

    def renew(self) -> None:
        until = _expiry()
        if not EvalRun.objects.filter(pk=self.eval_run_id, status=EvalRunStatus.RUNNING,
                                      finished_at=self.token).update(finished_at=until):
            raise LeaseLost(f"eval run {self.eval_run_id} was taken over by another process")
        self.token = until

    async def keep(self) -> None:
        """Renew every third of the lease; raises LeaseLost when the hold is gone."""
        every = max(settings.RUN_LEASE_S / 3, 0.2)
        while True:
            await asyncio.sleep(every)
            try:
                await sync_to_async(self.renew)()
            except LeaseLost:
                raise
            except Exception:
                log.exception("renewing the lease of eval run %s failed", self.eval_run_id)

    def hand_back(self) -> None:
        """Let the eval run go at once (this worker shuts down): its lease expires now, so the
        stuck-runs sweep, or the requeued message, resumes it elsewhere (finished cases kept)."""
        EvalRun.objects.filter(pk=self.eval_run_id, status=EvalRunStatus.RUNNING, finished_at=self.token).update(
            finished_at=lease_clock.now() - timedelta(seconds=1))

    def finish(self, **fields: object) -> bool:
        """End the eval run (status, metrics, finished_at...) if this process still holds it, and
        take back the grants its agent variant was given (copies of the agent's at the start):
        they outlived the eval run, an operator's revocation of the agent's own (a network grant)
        left the copy, and a pipeline could name the variant (a review)."""
        ended = bool(EvalRun.objects.filter(pk=self.eval_run_id, status=EvalRunStatus.RUNNING,
                                            finished_at=self.token).update(**fields))
        if ended:
            revoke_variant_grants(self.eval_run_id)
        return ended


def revoke_variant_grants(eval_run_id: int) -> None:
    """Delete the grants of an eval run's agent variant (`<agent>--eval<id>`, internal)."""
    from mcpgateway.actions.access import do_revoke_grant
    from mcpgateway.models import Grant
    from orchestrator.models import Agent

    team_id = EvalRun.objects.filter(pk=eval_run_id).values_list("suite__team_id", flat=True).first()
    names = list(Agent.objects.filter(team_id=team_id, internal=True, name__endswith=f"--eval{eval_run_id}")
                 .values_list("name", flat=True))
    for grant in Grant.objects.filter(team_id=team_id, agent_name__in=names):
        do_revoke_grant(grant)

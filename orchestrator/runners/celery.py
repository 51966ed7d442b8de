"""The distributed runner: runs are executed by Celery workers, on any number of machines.

When the broker does not answer, `submit` does not fail the caller: the run is already
committed as `queued`, so it is handed to this process's redispatch loop, which publishes it
as soon as the broker is back (looking again every `REDISPATCH_EVERY_S`). If this process
dies first, beat's stuck-runs sweep requeues runs left queued longer than `STUCK_QUEUED_S`.
Publishing is bounded (`CELERY_TASK_PUBLISH_RETRY_POLICY`, the broker's socket timeouts), so
a request that starts a run during an outage answers in about a second.

Cancelling needs nothing here: the run's `cancel_requested` flag reaches the worker at its
next commit or poll.
"""

from __future__ import annotations

import logging
import threading

from django.conf import settings

log = logging.getLogger(__name__)


def publish(run_id: int) -> None:
    """Queue the run's task; raises when the broker cannot take it within the retry policy.

    Sent through the project's Celery app by name, never through whichever app happens to be
    "current" in this process (a client library may have made its own current)."""
    from config.celery import app

    app.send_task("orchestrator.tasks.execute_run_task", args=(run_id,), retry=True,
                  retry_policy=settings.CELERY_TASK_PUBLISH_RETRY_POLICY)


class Redispatcher:
    """Runs whose task could not be published, published again until the broker takes them."""

    def __init__(self) -> None:
        self._pending: set[int] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, run_id: int) -> None:
        with self._lock:
            self._pending.add(run_id)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="agentdeck-redispatch", daemon=True)
                self._thread.start()

    def pending(self) -> set[int]:
        with self._lock:
            return set(self._pending)

    def _loop(self) -> None:
        while True:
            self._wake.wait(settings.REDISPATCH_EVERY_S)
            with self._lock:
                if not self._pending:
                    self._thread = None
                    return
                run_ids = sorted(self._pending)
            for run_id in run_ids:
                if not self._still_waiting(run_id):
                    self._discard(run_id)
                    continue
                try:
                    publish(run_id)
                except Exception as exc:  # the broker is still down: keep it, look again
                    log.info("broker still unavailable for run %s: %s", run_id, exc)
                    break
                log.warning("run %s dispatched after the broker came back", run_id)
                self._discard(run_id)

    def _discard(self, run_id: int) -> None:
        with self._lock:
            self._pending.discard(run_id)

    @staticmethod
    def _still_waiting(run_id: int) -> bool:
        """Queued and unclaimed (a worker, the sweep or a cancel may have got there first), or
        queued with a lease that ran out (resumed while a worker that since died held it)."""
        from django.db import connection
        from django.db.models import Q

        from orchestrator import lease_clock
        from orchestrator.models import Run, RunStatus

        try:
            return Run.objects.filter(Q(lease_owner="") | Q(lease_until__lt=lease_clock.now()), pk=run_id,
                                      status=RunStatus.QUEUED, cancel_requested=False).exists()
        except Exception:  # the database answers again later; try the broker anyway
            log.exception("could not check run %s before redispatching it", run_id)
            return True
        finally:
            connection.close()  # an occasional check: hand the connection back (pool) or close it


redispatcher = Redispatcher()


class CeleryRunner:
    def submit(self, run_id: int) -> None:
        """Queue the run for a worker; if the broker is down, queue it as soon as it is back."""
        try:
            publish(run_id)
        except Exception as exc:  # kombu OperationalError, redis errors, timeouts: the run is committed
            log.warning("broker unavailable; run %s stays queued and is dispatched once it is back: %s", run_id, exc)
            redispatcher.add(run_id)

    def cancel(self, run_id: int) -> None:
        """Nothing to do in this process; the worker sees the flag."""

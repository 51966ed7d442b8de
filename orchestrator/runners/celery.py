"""The distributed runner: runs are executed by Celery workers, on any number of machines.

Cancelling needs nothing here: the run's `cancel_requested` flag reaches the worker at its
next commit or poll.
"""

from __future__ import annotations


class CeleryRunner:
    def submit(self, run_id: int) -> None:
        from orchestrator.tasks import execute_run_task

        execute_run_task.delay(run_id)

    def cancel(self, run_id: int) -> None:
        """Nothing to do in this process; the worker sees the flag."""

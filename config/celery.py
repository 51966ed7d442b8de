"""The Celery app of the distributed shape: workers execute runs (orchestrator.tasks).

Configured from Django settings prefixed CELERY_; tasks are found with autodiscover.

A worker is one process with Celery's `threads` pool of `AGENTDECK_RUNS_PER_WORKER` threads
(default 500): each run's task hands the run to the process's one shared event loop and waits
there, so one process holds hundreds of runs that wait on their models (the design and its
measurement: `orchestrator.runners.worker_pool`). A pool named on the command line wins
(`--pool=prefork` gets Celery's own default concurrency, `--pool=solo` one run at a time);
`--concurrency` wins over the setting. These are defaults rather than settings because Celery
cannot tell an explicit `--pool=prefork` from its default once `worker_pool` is configured.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from celery import Celery
from celery.concurrency.thread import ApplyResult
from celery.concurrency.thread import TaskPool as ThreadTaskPool
from celery.signals import worker_ready, worker_shutting_down
from celery.worker.consumer import Consumer

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("agentdeck")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _pool_on_command_line(argv: list[str]) -> str | None:
    """The pool named by `--pool=X`, `--pool X`, `-P X` or `-PX`, if any."""
    for i, arg in enumerate(argv):
        if arg.startswith("--pool="):
            return arg.split("=", 1)[1]
        if arg in ("--pool", "-P"):
            return argv[i + 1] if i + 1 < len(argv) else None
        if arg.startswith("-P") and not arg.startswith("--"):
            return arg[2:]
    return None


def _worker_defaults() -> dict[str, Any]:
    from django.conf import settings

    if _pool_on_command_line(sys.argv) not in (None, "threads"):
        return {}
    return {"worker_pool": "config.celery:RunThreadPool", "worker_consumer": "config.celery:RunConsumer",
            "worker_concurrency": settings.AGENTDECK_RUNS_PER_WORKER}


app.add_defaults(_worker_defaults)  # evaluated when the configuration is first read


class _RunResult(ApplyResult):
    def terminate(self, signal: Any = None) -> None:
        """Nothing more to do: the run was handed back (`RunConsumer.cancel_active_requests`),
        and its thread ends as the run unwinds."""


class RunThreadPool(ThreadTaskPool):
    """Celery's threads pool, able to stop its jobs at a cold shutdown.

    A cold shutdown (SIGQUIT, or a second Ctrl+C) cancels the active requests through the
    pool's `terminate_job`, which the threads pool lacks: its NotImplementedError killed the
    consumer before `worker_shutting_down` could hand the runs back, and the worker hung on
    threads waiting for runs nobody had stopped. `RunConsumer` hands every run back first; the
    requests' cancels then have nothing left to do. Outside a shutdown (`celery control revoke
    --terminate` names one task, which this pool cannot single out) it refuses as before."""

    def terminate_job(self, pid: Any, signal: Any = None) -> None:
        from orchestrator.runners import worker_pool

        if not worker_pool.shutting_down():
            super().terminate_job(pid, signal)  # NotImplementedError: the control command fails, nothing else

    def on_apply(self, *args: Any, **kwargs: Any) -> ApplyResult:
        return _RunResult(super().on_apply(*args, **kwargs).f)


class RunConsumer(Consumer):
    """Celery's consumer; cancelling the active requests (a cold shutdown, its only caller)
    hands every run of this process back at once first."""

    def cancel_active_requests(self) -> None:
        from orchestrator.runners import worker_pool

        worker_pool.hand_back_all(0.0)
        super().cancel_active_requests()


def prestart_threads(executor: Any, count: int) -> int:
    """Start `count` threads of a `ThreadPoolExecutor` now, left idle: returns how many it has.

    The threads pool starts a thread for a message only when no thread is idle, and
    `Thread.start` waits until the new thread runs: with the loop and the writer threads busy
    claiming runs, each start waits for the GIL, and a burst of 500 runs spent seconds starting
    its 500 threads one message at a time. Started once when the worker is ready, before any
    burst, they cost about 20 KB of RSS each and no CPU."""
    import threading

    release = threading.Event()
    try:
        for _ in range(count):
            executor.submit(release.wait, 30)
    finally:
        release.set()
    return len(getattr(executor, "_threads", ()))


@worker_ready.connect
def _prestart_pool(sender: Any = None, **kwargs: object) -> None:
    from concurrent.futures import ThreadPoolExecutor

    executor = getattr(getattr(sender, "pool", None), "executor", None)
    if isinstance(executor, ThreadPoolExecutor):
        prestart_threads(executor, executor._max_workers)


@worker_shutting_down.connect
def _hand_back_runs(how: str = "", **kwargs: object) -> None:
    """Warm or cold shutdown: runs in flight give their leases back and requeue their messages,
    instead of holding the shutdown until every one of them ends. A warm one first lets the
    tool calls in flight end (`AGENTDECK_SHUTDOWN_GRACE_S`); a cold one (also the second
    signal of a warm one) hands back at once."""
    from orchestrator.runners import worker_pool

    worker_pool.hand_back_all(worker_pool.shutdown_grace_s() if how == "Warm" else 0.0)

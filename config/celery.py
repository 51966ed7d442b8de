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
from celery.signals import worker_shutting_down

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
    return {"worker_pool": "threads", "worker_concurrency": settings.AGENTDECK_RUNS_PER_WORKER}


app.add_defaults(_worker_defaults)  # evaluated when the configuration is first read


@worker_shutting_down.connect
def _hand_back_runs(how: str = "", **kwargs: object) -> None:
    """Warm or cold shutdown: runs in flight give their leases back and requeue their messages,
    instead of holding the shutdown until every one of them ends. A warm one first lets the
    tool calls in flight end (`AGENTDECK_SHUTDOWN_GRACE_S`); a cold one (also the second
    signal of a warm one) hands back at once."""
    from orchestrator.runners import worker_pool

    worker_pool.hand_back_all(worker_pool.shutdown_grace_s() if how == "Warm" else 0.0)

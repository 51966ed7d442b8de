"""A worker process's run pool: every run this process executes shares one event loop.

Agent runs spend nearly all their time waiting for a model, so a process should hold
hundreds of them, not one. Celery stays the queue and the supervisor: the worker runs
Celery's `threads` pool with `AGENTDECK_RUNS_PER_WORKER` threads (config/celery.py), and each
`execute_run_task` hands its run to the process's one background loop
(`mcpgateway.background`, where the gateway's upstream supervisor also lives, so tool calls
need no thread hop) and blocks its pool thread until the run reaches its next stop. The
message is therefore acknowledged exactly as before (`acks_late`: once the run stopped or was
handed back), prefetch is bounded by the pool size, and the number of runs in a process is
bounded by the number of pool threads.

Why threads and not a custom asyncio consumer: a thread blocked on a future costs about
20 KB of RSS (measured: 500 threads blocked on `Future.result()` add 20.7 KB each), far
below the 1 MB a waiting run may cost, and no Python runs on it while it waits; everything
Celery guarantees about delivery is kept without re-implementing a consumer. Database work
never happens on the pool threads: it runs on the loop's writer threads (`config.db_writer`),
which share the process's psycopg pool (`DB_POOL_MAX`), so 500 runs still open at most
`DB_POOL_MAX` connections. One lease keeper per loop (`lease_keeper`) replaces the per-run
cancel poll and heartbeat, which at 500 runs were a thousand transactions a second.

Measured (`tests/bench/bench_worker_pool.py`, one process, 500 two-step runs, 5 s model
latency, PostgreSQL, a shared 2-core machine at load 5): 490 runs in flight at once, 69 KB
RSS per waiting run, 4 PostgreSQL connections, a started run 10.5 s for 10 s of model calls;
wall 2.2x the ideal because claiming the 500 runs took 8.5 s. The process is bound by
database round trips (~13 transactions per run on the writer threads' connections), not by
the pool, its threads or its memory; batching claims and loads is the next lever.

On a warm or cold shutdown (`worker_shutting_down`) the runs in flight are cancelled: each
hands its lease back at once (`execution.execute_run`) and its task rejects its message
with requeue, so another worker takes the run from its last persisted point within
seconds. A killed process hands nothing back: its unacknowledged messages and its runs'
leases expire, and beat's stuck-runs sweep requeues the runs (nothing completed is repeated:
the engine's ledger).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass

from asgiref.sync import sync_to_async

from config.db_writer import releasing
from mcpgateway.background import background_loop, submit

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Stop:
    """Where one execution of a run stopped: its status; or, when this process could not claim
    it, the lease expiry of the process that holds it (None: not runnable at all); or
    `handed_back` when this worker's shutdown cancelled it and gave its lease back."""

    status: str | None
    held_lease: str | None = None
    handed_back: bool = False


_lock = threading.Lock()
_in_flight: dict[int, asyncio.Task[Stop]] = {}  # run id -> its task on the shared loop
_shutting_down = threading.Event()


async def _execute(run_id: int) -> Stop:
    from orchestrator.execution import execute_run, held_lease

    task = asyncio.current_task()
    assert task is not None
    with _lock:
        _in_flight[run_id] = task
    try:
        if _shutting_down.is_set():
            return Stop(None, handed_back=True)
        try:
            outcome = await execute_run(run_id)
        except asyncio.CancelledError:
            if not _shutting_down.is_set():
                raise
            return Stop(None, handed_back=True)  # execute_run gave the lease back as it unwound
        if outcome is not None:
            return Stop(outcome.status)
        return Stop(None, await sync_to_async(releasing(held_lease), thread_sensitive=False)(run_id))
    finally:
        with _lock:
            if _in_flight.get(run_id) is task:
                del _in_flight[run_id]


def execute(run_id: int) -> Stop:
    """Run `run_id` on this process's shared loop and wait, on the calling thread, until it stops."""
    if _shutting_down.is_set():
        return Stop(None, handed_back=True)
    return submit(_execute(run_id)).result()


def in_flight() -> int:
    """How many runs this process is executing now."""
    with _lock:
        return len(_in_flight)


def hand_back_all() -> int:
    """Cancel every run in flight here; each gives its lease back as it unwinds and its waiting
    task returns `handed_back`. Safe to call from a signal handler. Returns how many."""
    _shutting_down.set()
    with _lock:
        tasks = list(_in_flight.values())
    if tasks:
        loop = background_loop()
        for task in tasks:
            loop.call_soon_threadsafe(task.cancel)
        # Logged from the loop: a signal handler must not take the logging locks.
        loop.call_soon_threadsafe(log.warning, "shutting down: handing %d run(s) back to the queue", len(tasks))
    return len(tasks)

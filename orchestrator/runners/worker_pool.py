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

Per loop, not per run: the claims of the runs that start together are taken in one batch
(`claims`: one `UPDATE ... RETURNING` and its loads in one transaction for up to 128 runs,
instead of about twelve transactions per run), and one lease keeper watches and renews every
run's lease (`lease_keeper`). Each run's event flusher sleeps until its store buffers
something (`watch_pending`), so a waiting run wakes twice a second, not forty times.

Measured (`tests/bench/bench_worker_pool.py`, one process, 500 two-step runs, 5 s model
latency, PostgreSQL, 4 connections): 500 runs in flight, ~50 KB RSS per waiting run. The
start costs ~1 PostgreSQL transaction per run instead of ~13 (in-process count). Wall time
against the ideal is bound by the process's one core for Python (the GIL): each run's intake
(its message, claim, load and first commit) and its commits cost CPU, and a burst of 500 pays
them all at once. The claims once capped the intake at ~50 runs a second (batches of one or
two, each holding a writer thread while it waited for the GIL between round trips); they now
go as a group while a batch is in flight (`claims`). kombu's Redis transport took one message
per two round trips, each waiting for the GIL; `config.redis_broker` takes a burst per round
trip (500 messages were taken in ~2.8 s, now ~1.2 s). See the README for the figures.

On a warm or cold shutdown (`worker_shutting_down`) the runs in flight are cancelled: each
hands its lease back at once (`execution.execute_run`, after its last writes landed) and its
task rejects its message with requeue, so another worker takes the run from its last
persisted point within seconds. A warm shutdown first lets the tool calls already at an
upstream end (up to `AGENTDECK_SHUTDOWN_GRACE_S`, starting no new ones: `tool_gate`), so it
does not turn them into calls that "may have run". A killed process hands nothing back: its
unacknowledged messages and its runs' leases expire, and beat's stuck-runs sweep requeues the
runs (nothing completed is repeated: the engine's ledger).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings

from config.db_writer import releasing
from mcpgateway.background import background_loop, submit
from orchestrator.runners.tool_gate import current_run, gate

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
# The tasks of the runs in flight on the shared loop. A set, not keyed by run id: a duplicate
# delivery of a run this process executes (a redelivered message, the stuck-runs sweep) runs
# beside it for a moment and must neither replace nor remove the real run's entry.
_in_flight: set[asyncio.Task[Stop]] = set()
_shutting_down = threading.Event()
# The process's run places (`AGENTDECK_RUNS_PER_WORKER`), on the shared loop. A run of
# `execute` holds a pool thread and one place; an eval holds one pool thread and a place for
# each of its case runs while it executes, so an eval of `concurrency: 32` no longer puts 32
# runs into a worker sized for 2 (a review).
_places: asyncio.Semaphore | None = None
_pooled: contextvars.ContextVar[bool] = contextvars.ContextVar("agentdeck_pooled", default=False)


@contextlib.asynccontextmanager
async def run_place() -> AsyncIterator[None]:
    """Hold one of this process's run places while a run executes here. Outside the pool's
    tasks (the inline runner, `manage.py eval run`) there is no bound: it yields at once."""
    global _places
    if not _pooled.get():
        yield
        return
    if _places is None:
        _places = asyncio.Semaphore(settings.AGENTDECK_RUNS_PER_WORKER)
    async with _places:
        yield


async def _execute(run_id: int) -> Stop:
    from orchestrator.execution import execute_run, held_lease

    task = asyncio.current_task()
    assert task is not None
    current_run.set(task)  # (this task's own context: its tool calls name it at the gate)
    _pooled.set(True)
    with _lock:
        _in_flight.add(task)
    try:
        if _shutting_down.is_set():
            return Stop(None, handed_back=True)
        try:
            async with run_place():
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
            _in_flight.discard(task)


async def _execute_eval(eval_run_id: int) -> Stop:
    from orchestrator.evals.harness import execute_eval_run

    task = asyncio.current_task()
    assert task is not None
    current_run.set(task)
    _pooled.set(True)  # (its case runs each take a run place: `harness._drive`)
    with _lock:
        _in_flight.add(task)
    try:
        if _shutting_down.is_set():
            return Stop(None, handed_back=True)
        try:
            eval_run = await execute_eval_run(eval_run_id)
        except asyncio.CancelledError:
            if not _shutting_down.is_set():
                raise
            return Stop(None, handed_back=True)  # its case runs and its own lease were given back
        return Stop(eval_run.status if eval_run is not None else None)
    finally:
        with _lock:
            _in_flight.discard(task)


def execute_eval(eval_run_id: int) -> Stop:
    """Run an eval run's cases on this process's shared loop, beside its runs, and wait: a
    shutdown hands it back like a run (it ran on a loop of its own, which no shutdown could
    stop, so a warm or cold shutdown waited for the whole eval)."""
    if _shutting_down.is_set():
        return Stop(None, handed_back=True)
    return submit(_execute_eval(eval_run_id)).result()


def execute(run_id: int) -> Stop:
    """Run `run_id` on this process's shared loop and wait, on the calling thread, until it stops."""
    if _shutting_down.is_set():
        return Stop(None, handed_back=True)
    return submit(_execute(run_id)).result()


def shutting_down() -> bool:
    """Whether this process is handing its runs back (a warm or cold shutdown began)."""
    return _shutting_down.is_set()


def in_flight() -> int:
    """How many runs this process is executing now."""
    with _lock:
        return len(_in_flight)


def hand_back_all(grace_s: float = 0.0) -> int:
    """Stop the runs in flight here: each gives its lease back as it unwinds and its waiting
    task returns `handed_back`. Returns how many runs are in flight.

    With `grace_s` (a warm shutdown) no tool call starts any more, and the runs are cancelled
    once the tool calls already at an upstream have ended, or after `grace_s` seconds, so a
    shutdown cuts off (turns into "may have run") as few side effects as it can; without it (a
    cold shutdown) at once. The runs are cancelled once: `worker_shutting_down` fires at a
    warm and again at a cold shutdown, and a second cancel would cut through their shielded
    final commits while they unwind; a cold shutdown during the grace only ends the wait.
    Safe to call from a signal handler: the work is done on the loop.
    """
    _shutting_down.set()
    with _lock:
        count = len(_in_flight)
    if count:
        background_loop().call_soon_threadsafe(_stop_runs, grace_s)
    return count


_cancelled = False  # on the loop: the runs in flight were cancelled (see hand_back_all)
_waiting: asyncio.Task[None] | None = None  # on the loop: the grace of a warm shutdown


def shutdown_grace_s() -> float:
    """How long a warm shutdown waits for tool calls in flight (`AGENTDECK_SHUTDOWN_GRACE_S`,
    default 20 s: well within the compose file's 60 s `stop_grace_period`)."""
    from django.conf import settings

    return max(float(settings.AGENTDECK_SHUTDOWN_GRACE_S), 0.0)


def _stop_runs(grace_s: float) -> None:
    global _waiting
    if _cancelled:
        return
    tools = gate()
    tools.stop_run = _hand_back_early
    tools.close()  # no tool call starts on this loop any more
    if grace_s > 0:
        if _waiting is None:
            _waiting = asyncio.get_running_loop().create_task(_cancel_after(grace_s), name="agentdeck-shutdown-grace")
        return
    _cancel_all()


async def _cancel_after(grace_s: float) -> None:
    tools = gate()
    if tools.active:
        log.warning("shutting down: waiting up to %.0f s for %d tool call(s) in flight", grace_s, tools.active)
        if not await tools.idle(grace_s):
            log.warning("shutting down: %d tool call(s) still in flight after %.0f s are cut off", tools.active, grace_s)
    _cancel_all()


# Runs handed back before the others (they reached the closed gate): cancelled once only, as
# a second cancel would cut through their shielded final commits while they unwind.
_stopped_early: weakref.WeakSet[asyncio.Task[Stop]] = weakref.WeakSet()


def _hand_back_early(task: asyncio.Task[Stop]) -> None:
    """A run that reached the closed gate during the grace: handed back now, not when its
    step's timeout runs out (its call is made when it resumes elsewhere)."""
    with _lock:
        if _cancelled or task in _stopped_early or task not in _in_flight:
            return
        _stopped_early.add(task)
    task.cancel()


def _cancel_all() -> None:
    global _cancelled
    if _cancelled:
        return
    with _lock:
        _cancelled = True
        tasks = [task for task in _in_flight if task not in _stopped_early]
    for task in tasks:
        task.cancel()
    if tasks:
        log.warning("shutting down: handing %d run(s) back to the queue", len(tasks))

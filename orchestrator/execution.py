"""Run one run: load what it needs, claim it, hand it to the engine.

Runners (inline task, Celery task) call `execute_run`; so does the CLI. This is the one
place that wires the engine to Django: the store, the model door and the toolbox.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import logging
import os
import secrets
import socket
from collections.abc import Awaitable
from decimal import Decimal
from typing import Any, TypeVar

from django.conf import settings
from django.db import transaction
from django.utils.module_loading import import_string

from config import log_context, tracing
from config.db_writer import run_write
from mcpgateway.types import Toolbox
from mcpgateway.whole_numbers import is_whole
from orchestrator import lease_clock
from orchestrator.actions.runs import do_fail_run
from orchestrator.engine.executor import Engine, RunOutcome
from orchestrator.engine.spec import Limits
from orchestrator.model_door import ModelDoor
from orchestrator.models import Run, RunStatus
from orchestrator.runners import claims
from orchestrator.runners.claims import Prepared, claim_runs
from orchestrator.runners.lease_keeper import KeptRunStore, keeper, mark_handed_back
from orchestrator.runners.tool_gate import GatedToolbox
from orchestrator.store import Listener

log = logging.getLogger(__name__)
T = TypeVar("T")


def default_toolbox(team_id: int) -> Toolbox:
    """The toolbox runs use unless given one: `AGENTDECK_TOOLBOX` names a factory taking a team id."""
    factory = import_string(settings.AGENTDECK_TOOLBOX)
    return factory(team_id)


def worker_id() -> str:
    """This process, as a lease owner: host, pid and a random part (pids are reused)."""
    global _worker_id
    if _worker_id is None:
        _worker_id = f"{host_identity()}:{os.getpid()}:{secrets.token_hex(3)}"
        atexit.register(hand_back_runs)
    return _worker_id


def held_lease(run_id: int) -> str | None:
    """The lease expiry (ISO text) of a running run that another process holds, else None."""
    until = Run.objects.filter(pk=run_id, status=RunStatus.RUNNING, cancel_requested=False,
                               lease_until__isnull=False).values_list("lease_until", flat=True).first()
    return until.isoformat() if until else None


def host_identity() -> str:
    """This host as lease owners name it: the hostname and the PID namespace, so containers that
    share a hostname (host networking, a fixed `hostname:`) but not their pids never judge each
    other's processes."""
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = 0
    return f"{socket.gethostname()}@{namespace}"


def lease_holder_is_dead(holder: str) -> bool:
    """True when a lease owner (`host@pidns:pid:…`) names a process of this host's PID namespace
    that no longer runs.

    Owners elsewhere, and pids that run (possibly reused by another process), count as alive:
    their leases run out on their own.
    """
    host, _, rest = holder.partition(":")
    pid_text = rest.split(":", 1)[0]
    if host != host_identity() or not is_whole(pid_text):
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False  # this process: its own runs end or hand back through it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """A killed child its parent has not reaped yet still answers kill(pid, 0)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def hand_back_runs() -> int:
    """At shutdown: expire this process's leases so another worker can take its runs at once
    (they resume from their last persisted point). Returns how many were handed back."""
    if not _in_hand:
        return 0  # nothing in flight: no database work at exit (it may already be gone)
    # Best effort at interpreter exit: if the database (or stderr) is already gone, the leases
    # simply expire on their own and the runs are picked up a lease later.
    with contextlib.suppress(Exception):
        return Run.objects.filter(lease_owner__in=list(_in_hand), status=RunStatus.RUNNING).update(
            lease_until=lease_clock.now())
    return 0


_worker_id: str | None = None
_in_hand: set[str] = set()  # lease owners of the runs this process is executing now
_executions = itertools.count(1)  # (random bits could repeat: two executions of a run would share a lease)


def _forget_worker() -> None:
    """In a forked child: its own worker id (a new pid, a new random part), count and runs."""
    global _worker_id, _executions
    _worker_id, _executions = None, itertools.count(1)
    _in_hand.clear()


os.register_at_fork(after_in_child=_forget_worker)


def _claim(run_id: int, owner: str) -> Prepared | None:
    """Claim and load one run now (a batch of one): the prepared run, or None if it is not
    runnable or another live worker holds it."""
    outcome = claim_runs([(run_id, owner)])[0]
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


async def execute_run(run_id: int, *, toolbox: Toolbox | None = None, listeners: list[Listener] | None = None,
                      flush_interval: float | None = None) -> RunOutcome | None:
    """Run or resume `run_id` to its next stop (finished, waiting for review, cancelled)."""
    owner = f"{worker_id()}:{next(_executions):x}"  # one lease owner per execution, never two alike
    # With the other runs starting on this loop now: one batch, one writer job (`claims`).
    claim = claims.claim(run_id, owner)
    try:
        prepared = await asyncio.shield(claim)
    except asyncio.CancelledError:
        # Cancelled (a shutdown) while the claim runs on its writer thread: it commits anyway.
        # Wait for it, and if it took the run give the lease back, else it sits out its lease.
        with contextlib.suppress(Exception):
            if await _despite_cancel(claim) is not None:
                await _despite_cancel(run_write(_hand_back, run_id, owner))
        raise
    except Exception:
        # Taken, maybe, but not prepared (a database error after the claim committed): let the
        # lease go at once so the sweep hands the run out again, rather than a lease later.
        with contextlib.suppress(Exception):
            await run_write(_hand_back, run_id, owner)
        raise
    if prepared is None:
        return None
    run = prepared.run
    leases = keeper()  # this loop's runs share one lease watch and renewal
    try:
        limits = Limits.model_validate({**prepared.spec.limits.model_dump(exclude_none=True), **(run.limits or {})})
        door = ModelDoor(limits=limits, prices=prepared.prices, used_tokens=run.input_tokens + run.output_tokens,
                         used_cost=Decimal(run.cost_usd), budgets=prepared.budgets, agent_ids=prepared.agent_ids,
                         agent_rates=prepared.agent_rates, run_id=run.pk, lease_owner=owner,
                         team_id=run.team_id, pipeline_id=run.pipeline_version.pipeline_id)
        store = KeptRunStore(run.pk, listeners=listeners, lease_owner=owner, keeper=leases, preloaded=prepared.load)
        engine = Engine(
            spec=prepared.spec,
            store=store,
            models=door,
            # Through the loop's gate: a warm shutdown lets calls in flight end and starts no more.
            toolbox=GatedToolbox(toolbox if toolbox is not None else default_toolbox(run.team_id)),
            agents=prepared.agents,
            run_id=run.pk,
            team_id=run.team_id,
            flush_interval=(settings.EVENT_FLUSH_MS / 1000) if flush_interval is None else flush_interval,
            context={"worker": owner},
        )
    except Exception as exc:  # (the run's own limits do not validate, the toolbox cannot be made, …)
        log.exception("run %s could not be started", run_id)
        await run_write(do_fail_run, run_id, f"internal error: {type(exc).__name__}: {exc}", owner)
        raise
    run_input: dict[str, Any] = run.input or {}
    _in_hand.add(owner)
    leases.hold(run.pk, owner)
    log_context.run_id.set(run.pk)
    try:
        with tracing.span(f"run {run.pipeline_version.pipeline.slug}", {
                "gen_ai.operation.name": "invoke_workflow", "agentdeck.run.id": run.pk,
                "agentdeck.pipeline": run.pipeline_version.pipeline.slug, "agentdeck.worker": owner},
                parent=tracing.context_from(run.trace_context)) as run_span:
            outcome = await engine.run(run_input)
            tracing.set_attributes(run_span, {"agentdeck.run.status": outcome.status if outcome else None})
        _in_hand.discard(owner)  # only a finished stop lets go; a shutdown leaves it for hand_back_runs
        if outcome is None or outcome.status != RunStatus.WAITING_REVIEW:
            return outcome
        if not store.requeued:
            await _cancelled_if_asked(run.pk)
            return outcome
    except asyncio.CancelledError:
        # This process stops executing the run (its worker shuts down, a runner cancelled it):
        # give the lease back now so another worker resumes it at once, not a lease later.
        # But first let the run's writes land: the engine's final commit may still be running
        # in the group commit (a second cancel cuts through its shield, not the commit), and
        # what it buffered (a finished tool call's ledger row) may not be committed at all. A
        # hand-back committed before them lets another worker claim the run; the late commit
        # would then fail LeaseLost and the tool call be made again. `commit` waits for the
        # store's commit in progress, then writes what is left.
        with contextlib.suppress(Exception):
            await _despite_cancel(store.commit(final=True))
        with contextlib.suppress(Exception):
            await _despite_cancel(run_write(_hand_back, run.pk, owner))
            _in_hand.discard(owner)
        raise
    except Exception as exc:
        _in_hand.discard(owner)
        # A bug or an unreachable database: never leave the run looking alive.
        log.exception("run %s crashed", run_id)
        # Only while the run is still this execution's: if its lease ran out and another worker
        # took the run over, that worker's execution stands.
        await run_write(do_fail_run, run_id, f"internal error: {type(exc).__name__}: {exc}", owner)
        raise
    finally:
        leases.release(run.pk, owner)
    # Its reviews were all decided while it ran: its pause left it queued (the store's
    # `requeued`), and it goes on here, claimed again.
    return await execute_run(run_id, toolbox=toolbox, listeners=listeners, flush_interval=flush_interval)


async def _despite_cancel(aw: Awaitable[T]) -> T:
    """Await `aw` to its end even when the calling task is cancelled (again) meanwhile; the
    caller, already unwinding a cancel, re-raises it afterwards."""
    inner = asyncio.ensure_future(aw)
    while True:
        try:
            return await asyncio.shield(inner)
        except asyncio.CancelledError:
            if inner.cancelled():
                raise
            if inner.done():
                return inner.result()


async def _cancelled_if_asked(run_id: int) -> None:
    try:
        await run_write(_finish_paused_cancel, run_id)
    except Exception:  # (the database failing): the run stays paused; a cancel or a decision moves it
        log.exception("run %s: could not finish the cancel asked while it ran", run_id)


def _finish_paused_cancel(run_id: int) -> None:
    """A cancel asked while the run still ran, just before it paused: the pause committed
    anyway (a last commit does not stop for a cancel) and the run waited for a review with its
    cancel flag set; a decision then queued it, and no claim takes a cancelled run, so it stayed
    queued for ever, holding a concurrent-runs slot (a review). Finished as cancelled here."""
    from orchestrator.actions.runs import _finish_cancelled

    with transaction.atomic():
        run = (Run.objects.select_for_update().select_related("pipeline_version")
               .filter(pk=run_id, status=RunStatus.WAITING_REVIEW, cancel_requested=True).first())
        if run is not None:
            _finish_cancelled(run)


def _hand_back(run_id: int, owner: str) -> None:
    mark_handed_back(run_id, owner)  # (first: a keeper's look must not renew what is given back)
    Run.objects.filter(pk=run_id, lease_owner=owner, status=RunStatus.RUNNING).update(lease_until=lease_clock.now())

"""One keeper per event loop for the leases of the runs executing on it.

A run's engine looks at the database every half second while a step waits on its model (has
the run been cancelled, does this process still hold it?) and its lease is renewed every
third of `RUN_LEASE_S`. Done per run, 500 runs waiting in one worker cost a thousand
transactions a second, which crowd out the commits that move runs forward. The keeper asks
once for all of them: one `SELECT` of the flags of every run it holds per poll, and one
`UPDATE` renewing all their leases per renewal period. A run's store (`KeptRunStore`) skips
its idle look while the keeper has seen nothing for it; once the keeper sees the run
cancelled or taken by another process, the store's next look goes to the database as before
and the engine stops the run the usual way.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings

from config.db_writer import run_write
from config.sql_rows import ids_in
from orchestrator import lease_clock
from orchestrator.engine.store import RunState
from orchestrator.metrics import RunObserver
from orchestrator.models import Run, RunStatus
from orchestrator.store import DjangoRunStore

if TYPE_CHECKING:
    from orchestrator.runners.claims import StoreLoad

log = logging.getLogger(__name__)

POLL_S = 0.5  # as often as the engine looked by itself (its default cancel poll)


# Leases given back (`execution._hand_back`, at a shutdown or a failed claim): their execution
# leaves the keeper only once the hand-back has answered, and a look whose list of due leases
# was taken before that (on the loop) and that reached a writer thread after the hand-back
# renewed the lease again, so the next worker waited a whole lease for the run (found by a
# review). Marked on the writer thread before the hand-back's UPDATE, read by every look
# there. A lease owner names one execution (never reused), so a mark is never wrong later; the
# newest HANDED_BACK_KEPT are kept, far more than the looks under way can need. An expired
# lease whose owner still holds the row is renewed as before: it is still its holder's.
HANDED_BACK_KEPT = 10_000
_handed_back: dict[tuple[int, str], None] = {}  # (insertion-ordered: the oldest go first)
_handed_back_lock = threading.Lock()


def mark_handed_back(run_id: int, owner: str) -> None:
    """`owner` gives the run's lease back: no look renews it from now on."""
    with _handed_back_lock:
        _handed_back[(run_id, owner)] = None
        while len(_handed_back) > HANDED_BACK_KEPT:
            del _handed_back[next(iter(_handed_back))]


def _not_handed_back(due: dict[int, str]) -> dict[int, str]:
    with _handed_back_lock:
        if not _handed_back:
            return due
        return {run_id: owner for run_id, owner in due.items() if (run_id, owner) not in _handed_back}


class LeaseKeeper:
    """The runs this loop executes (run id -> lease owner), watched and renewed together."""

    def __init__(self) -> None:
        self._owners: dict[int, str] = {}
        self._renewed: dict[int, float] = {}  # run id -> when its lease was last set (monotonic)
        self._flagged: set[int] = set()
        self._task: asyncio.Task[None] | None = None

    def hold(self, run_id: int, owner: str) -> None:
        self._owners[run_id] = owner
        self._renewed[run_id] = time.monotonic()  # the claim just set it
        self._flagged.discard(run_id)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._watch(), name="agentdeck-lease-keeper")

    def release(self, run_id: int, owner: str) -> None:
        """Stop keeping `owner`'s lease of the run. Ignored when the run is kept for another
        owner: after a takeover in this process (the old lease had run out), the old
        execution's release must not drop the new execution's lease."""
        if self._owners.get(run_id) != owner:
            return
        del self._owners[run_id]
        self._renewed.pop(run_id, None)
        self._flagged.discard(run_id)

    def owner(self, run_id: int) -> str | None:
        """The lease owner the keeper renews and watches for the run, if any."""
        return self._owners.get(run_id)

    def flagged(self, run_id: int, owner: str | None = None) -> bool:
        """Whether the run was seen cancelled, or held by someone else, since it was taken;
        with `owner`, also whether the keeper keeps the run for another owner (or not at all):
        an execution whose lease was taken over must look at the database itself."""
        if owner is not None and self._owners.get(run_id) != owner:
            return True
        return run_id in self._flagged

    def __len__(self) -> int:
        return len(self._owners)

    async def _watch(self) -> None:
        renew_every = max(settings.RUN_LEASE_S / 3, 0.5)
        while self._owners:
            await asyncio.sleep(POLL_S)
            owners = dict(self._owners)
            if not owners:
                break
            started = time.monotonic()
            due = {run_id: owner for run_id, owner in owners.items()
                   if started - self._renewed.get(run_id, started) >= renew_every}
            try:
                seen, renewed = await run_write(_look, owners, due)
            except Exception:
                log.exception("watching the leases of %d run(s) failed", len(owners))
                continue
            for run_id in renewed:
                if self._owners.get(run_id) == owners[run_id]:  # not re-held meanwhile
                    self._renewed[run_id] = started
            for run_id, (cancel, holder) in seen.items():
                if (cancel or holder != owners[run_id]) and self._owners.get(run_id) == owners[run_id]:
                    self._flagged.add(run_id)
        self._task = None


def _look(owners: dict[int, str], due: dict[int, str]) -> tuple[dict[int, tuple[bool, str]], list[int]]:
    """One query for the flags of all the runs, and one update for the leases that are due.

    The rows to renew are locked in primary-key order, the order the store's group commits
    lock runs in, and rows a commit holds right now are skipped (renewed at the next poll):
    the renewal never waits on, or deadlocks with, the commits that move runs forward.

    Plain SQL with the ids as one parameter (`sql_rows.ids_in`): a worker holds hundreds of
    runs, and the ORM's placeholder per id made this look a twelfth of a busy worker's CPU."""
    from django.db import connection, transaction

    quote = connection.ops.quote_name
    table, pk = quote(Run._meta.db_table), quote(Run._meta.pk.column)
    renewed: list[int] = []
    due = _not_handed_back(due)
    if due:
        with transaction.atomic(), connection.cursor() as cursor:
            where, params = ids_in(pk, due)
            lock = " FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
            cursor.execute(f"SELECT {pk}, {quote('lease_owner')} FROM {table} WHERE {where} AND {quote('status')} = %s"
                           f" ORDER BY {pk}{lock}", [*params, RunStatus.RUNNING])
            renewed = [run_id for run_id, holder in cursor.fetchall() if holder == due[run_id]]
            if renewed:
                until = connection.ops.adapt_datetimefield_value(
                    lease_clock.now() + timedelta(seconds=settings.RUN_LEASE_S))
                where, params = ids_in(pk, renewed)
                cursor.execute(f"UPDATE {table} SET {quote('lease_until')} = %s WHERE {where}", [until, *params])
    with connection.cursor() as cursor:
        where, params = ids_in(pk, owners)
        cursor.execute(f"SELECT {pk}, {quote('cancel_requested')}, {quote('lease_owner')} FROM {table} WHERE {where}",
                       params)
        return {run_id: (bool(cancel), holder) for run_id, cancel, holder in cursor.fetchall()}, renewed


_keepers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LeaseKeeper] = weakref.WeakKeyDictionary()


def keeper() -> LeaseKeeper:
    """The keeper of the running loop."""
    loop = asyncio.get_running_loop()
    found = _keepers.get(loop)
    if found is None:
        found = _keepers[loop] = LeaseKeeper()
    return found


class KeptRunStore(DjangoRunStore):
    """The run's store, whose idle looks (nothing to write) are answered by the loop's keeper
    until it has seen something for this run; and whose first `load` of a run with no steps
    yet takes what the batch that claimed it read (`claims.StoreLoad`) instead of reading it
    again."""

    def __init__(self, run_id: int, *args: Any, keeper: LeaseKeeper, preloaded: StoreLoad | None = None, **kwargs: Any):
        super().__init__(run_id, *args, **kwargs)
        self.keeper = keeper
        self._preloaded = preloaded

    async def load(self) -> RunState:
        preloaded, self._preloaded = self._preloaded, None
        if preloaded is None:
            return await super().load()
        # What `DjangoRunStore._load` sets for a run without steps (a test compares the two).
        self._redactor = preloaded.redactor
        self._agents = dict(preloaded.agents)
        self._team_id = preloaded.team_id
        self._pipeline_id = preloaded.pipeline_id
        self._metrics = RunObserver(preloaded.slug)
        self._known_steps = set()
        self.expect_head(preloaded.team_id, preloaded.last_seq, preloaded.last_hash)
        return RunState(input_tokens=preloaded.input_tokens, output_tokens=preloaded.output_tokens,
                        cost_usd=str(preloaded.cost_usd))

    async def commit(self, **kwargs: Any) -> None:
        if not kwargs.get("final") and not self.has_pending() and not self.keeper.flagged(
                self.run_id, self.lease_owner or None):
            return
        await super().commit(**kwargs)

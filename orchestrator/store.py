"""The engine's store on the Django ORM: one transaction per commit, events chained in it.

All writes of one commit — step rows, ledger entries, usage records, review items, the
run row and every buffered event — go in a single transaction, then the events are
published. Writes run on one thread (`thread_sensitive`), which serialises them.

Every secret the instance holds is redacted here, before anything is stored or published
(`mcpgateway.redaction`): step input and output, ledger requests and results, review
context, run output and errors, and event data (so the hash chain covers the redacted
payloads and traces verify). Streamed model deltas, published live and never stored, go
through a stream redactor that holds back a tail that could be the start of a secret.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from django.db import DataError, InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from config.db_writer import commit_alone, count_lone_commit, group_write, run_write
from config.sql_rows import (
    guarded_round_trip,
    insert_rows,
    one_query_capable,
    one_round_trip,
    select_row,
    select_rows,
    select_rows_by_pk,
    update_row,
)
from mcpgateway.dispatch import take_interrupted_calls
from mcpgateway.idempotency import call_key
from mcpgateway.models import AuditEntry, PrincipalKind
from mcpgateway.redaction import Redactor, StreamRedactor, current_redactor, get_redactor
from orchestrator import budgets, engine_wiring, webhooks
from orchestrator.engine.errors import LeaseLost, RunCancelled
from orchestrator.engine.store import (
    AuditWrite,
    LedgerWrite,
    ReviewWrite,
    RunState,
    RunWrite,
    StepRecord,
    StepWrite,
    UsageWrite,
    Write,
)
from orchestrator.events import build_events, event_payload, live_audience, publish
from orchestrator.metrics import RunObserver
from orchestrator.models import (
    Agent,
    BudgetReservation,
    LedgerEntry,
    ReviewItem,
    Run,
    RunEvent,
    RunStatus,
    StepRun,
    UsageRecord,
    Webhook,
)

Listener = Callable[[dict[str, Any]], None]
T = TypeVar("T")
log = logging.getLogger(__name__)
# How long a commit is tried again while the database is out of reach (`DjangoRunStore.commit`).
COMMIT_RETRY_S = 30.0

engine_wiring.install()  # engines this process runs trace and log through config/


async def retry_unreachable(attempt: Callable[[], Awaitable[T]], what: str) -> T:
    """`attempt()`, made again while the database is out of reach (OperationalError,
    InterfaceError: a connection cut by a server restart, a failover or a proxy, a database
    that stays locked): after 0.25 s, doubling to 5 s, for up to `COMMIT_RETRY_S`, then its
    error. For work that is safe to repeat: the store's commit, the model door's budget and
    rate-limit writes (`ModelDoor._db`)."""
    delay, deadline = 0.25, time.monotonic() + COMMIT_RETRY_S
    while True:
        try:
            return await attempt()
        except (OperationalError, InterfaceError) as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("%s failed (%s: %s); trying again in %.2f s", what, type(exc).__name__,
                        str(exc).strip().splitlines()[0] if str(exc).strip() else "", delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


@dataclass(slots=True)
class RunHead:
    """What a commit needs of the run row: the chain head, the cancel flag, the totals."""

    pk: int
    team_id: int
    last_seq: int
    last_hash: str
    cancel_requested: bool
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal
    lease_owner: str


@dataclass(slots=True)
class _Sent:
    """One commit attempt, made on the loop before it goes to a writer thread and filled in
    there: the buffered writes and events it carries (the very objects: a failed attempt puts
    them back, and they are told apart by identity), the event its events end with once chained
    (`last_seq`, `last_hash`: that row exists if and only if the attempt was made), their
    payloads, and, when it settled an earlier attempt's doubt, what of that one was made."""

    writes: list[Any]
    events: list[Any]
    doubt: _Sent | None = None  # an earlier attempt whose outcome is unknown, settled by this one
    last_seq: int | None = None
    last_hash: str = ""
    payloads: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    made: _Sent | None = None  # `doubt`, if this attempt found it made


def _chained(sent: _Sent, head: Any, new_events: list[dict[str, Any]]) -> None:
    """Note on the attempt the event its events end with, and their payloads: from here on it
    may be made whatever its caller hears. (A commit without events adds no event to look for
    and cannot be told made later.)"""
    if new_events:
        sent.last_seq, sent.last_hash = head.last_seq, head.last_hash
        sent.payloads = [event_payload(e) for e in new_events]


def _without(items: list[Any], taken: list[Any]) -> list[Any]:
    """`items` without the very objects in `taken`."""
    gone = {id(item) for item in taken}
    return [item for item in items if id(item) not in gone]


@dataclass(slots=True)
class _KnownHead:
    """The run's chain head as this store's last commit left it (what a one-round-trip commit
    expects to find, and checks it finds, in the row)."""

    pk: int
    team_id: int
    last_seq: int
    last_hash: str


class DjangoRunStore:
    """Persists one run. Only one process holds a run at a time (the runner claims it)."""

    def __init__(self, run_id: int, listeners: list[Listener] | None = None, publish_events: bool = True,
                 lease_owner: str = ""):
        self.run_id = run_id
        self.lease_owner = lease_owner
        self.listeners = listeners or []
        self.publish_events = publish_events
        self._writes: list[Write] = []
        self._events: list[tuple[str, str, dict[str, Any]]] = []
        self._lock = asyncio.Lock()
        self._agents: dict[str, int] = {}
        self._known_steps: set[str] = set()
        self._team_id: int | None = None
        self._pipeline_id: int | None = None
        self._metrics: RunObserver | None = None
        self._redactor: Redactor | None = None
        self._streams: dict[tuple[str, Any], StreamRedactor | None] = {}  # None: muted (no audience)
        # Writes and events buffered so far, and how many of them are committed: a commit whose
        # writes a concurrent commit already carried has nothing left to do.
        self._buffered = 0
        self._committed = 0
        self._cancel_seen = False
        self.requeued = False  # its pause found every review decided: queued again (`_commit`)
        # Commits that failed so far, and the last one: (writes it took up to, what it raised).
        self._failures = 0
        self._failure: tuple[int, BaseException] | None = None
        self._on_pending: Callable[[], None] | None = None  # the engine's flusher (watch_pending)
        # The head the last commit left (None: unknown, read it under the lock), and the one the
        # commit in flight will leave if it commits.
        self._head: _KnownHead | None = None
        self._next_head: _KnownHead | None = None
        # The last commit attempt that failed after its events were chained: a failure the
        # client cannot be sure of (the connection dropped after the server ran the COMMIT) may
        # have been made, and the retry, which carries its writes again, must not make them
        # twice. The next attempt settles it under the run's lock (`_settle`).
        self._doubt: _Sent | None = None

    # --- loading -------------------------------------------------------------------------

    async def load(self) -> RunState:
        # On the writer thread, like the commits: on SQLite a second writing connection (the
        # interrupted-calls update below) would wait on the group commits' lock.
        return await run_write(self._load)

    def _load(self) -> RunState:
        # Plain SQL: this runs once per run start and resume, and the ORM's query building was
        # most of its cost.
        with connection.cursor() as cursor:
            cursor.execute(_load_sql(), [self.run_id])
            found = cursor.fetchone()
            if found is None:
                raise Run.DoesNotExist(f"Run {self.run_id} does not exist")
            team_id, pipeline_id, slug, input_tokens, output_tokens, cost_usd, last_seq, last_hash = found
            cursor.execute(_agents_sql(), [team_id])
            self._agents = dict(cursor.fetchall())
        self.expect_head(team_id, last_seq, last_hash)
        self._team_id = team_id
        self._redactor = get_redactor(team_id)
        self._pipeline_id = pipeline_id
        self._metrics = RunObserver(slug)
        state = RunState(input_tokens=input_tokens, output_tokens=output_tokens, cost_usd=str(cost_usd))
        for step in StepRun.objects.filter(run_id=self.run_id):
            state.steps[step.key] = StepRecord(step.key, step.status, step.attempt, step.output, step.error)
        self._known_steps = set(state.steps)
        if not state.steps:
            # A run that never reached a step has no review items, ledger or tool calls (a step's
            # row is committed before its first tool call): nothing more to read or mark.
            return state
        # The newest review item of a step is the one that counts: an older decision must not
        # answer a newer pause of the same step.
        latest: dict[str, ReviewItem] = {}
        for item in ReviewItem.objects.filter(run_id=self.run_id).order_by("id"):
            latest[item.step_key] = item
        for key, item in latest.items():
            record = state.steps.get(key)
            if record is not None and record.status == "waiting_review" and item.status != ReviewItem.Status.PENDING:
                record.decision = item.decision or {}
        for entry in LedgerEntry.objects.filter(run_id=self.run_id).order_by("step_key", "attempt", "index"):
            state.ledger.setdefault((entry.step_key, entry.attempt), []).append(
                {"kind": entry.kind, "name": entry.name, "request": entry.request, "result": entry.result}
            )
        recorded = {call_key(self.run_id, step_key, attempt, index)
                    for (step_key, attempt), entries in state.ledger.items()
                    for index, entry in enumerate(entries) if entry["kind"] == "tool"}
        state.interrupted_calls = take_interrupted_calls(self.run_id, recorded)
        return state

    def expect_head(self, team_id: int, last_seq: int, last_hash: str) -> None:
        """The chain head the run's row held when it was loaded: what its first commit may
        expect to find (`_commit_alone` checks that it does, and falls back if not)."""
        self._head = _KnownHead(self.run_id, team_id, last_seq, last_hash) if _lone_capable() else None

    # --- buffering -----------------------------------------------------------------------

    def watch_pending(self, callback: Callable[[], None] | None) -> None:
        self._on_pending = callback

    def stage(self, write: Write) -> None:
        self._writes.append(write)
        self._buffered += 1
        if self._on_pending is not None:
            self._on_pending()

    def emit(self, type: str, data: dict[str, Any], step_key: str = "") -> None:
        if type == "llm.started":  # a new call: what an earlier, failed one held back is dropped
            for stream_key in [k for k in self._streams if k[0] == step_key]:
                del self._streams[stream_key]
        elif type == "llm.finished":  # the call's stream is over: send what was held back
            for stream_key in [k for k in self._streams if k[0] == step_key]:
                stream = self._streams.pop(stream_key)
                rest = stream.flush() if stream is not None else ""
                if rest:
                    self._publish_ephemeral("llm.delta", {"turn": stream_key[1], "text": rest}, step_key)
        self._events.append((type, step_key, data))
        self._buffered += 1
        if self._on_pending is not None:
            self._on_pending()

    def emit_ephemeral(self, type: str, data: dict[str, Any], step_key: str = "") -> None:
        audience = bool(self.listeners) or (self.publish_events and live_audience())
        if type == "llm.delta" and isinstance(data.get("text"), str):
            stream_key = (step_key, data.get("turn"))
            if stream_key in self._streams:
                stream = self._streams[stream_key]
            else:
                # A stream nobody watches as it starts stays muted to its end: one that began
                # mid-way could show the tail of a secret whose start went unseen.
                stream = StreamRedactor(self._redactor or current_redactor(self._team_id)) if audience else None
                self._streams[stream_key] = stream
            if stream is None:
                return
            text = stream.feed(data["text"])
            if not text:
                return
            data = {**data, "text": text}
        elif not audience:
            return
        else:
            data = (self._redactor or current_redactor(self._team_id)).redact(data)
        self._publish_ephemeral(type, data, step_key)

    def _publish_ephemeral(self, type: str, data: dict[str, Any], step_key: str) -> None:
        payload = {"run_id": self.run_id, "seq": None, "type": type, "step_key": step_key, "data": data, "ephemeral": True}
        for listener in self.listeners:
            listener(payload)
        if self.publish_events and live_audience():
            task = asyncio.get_running_loop().create_task(publish([payload]))
            _background.add(task)
            task.add_done_callback(_background.discard)

    def has_pending(self) -> bool:
        return bool(self._writes or self._events)

    async def cancel_requested(self) -> bool:
        return await run_write(lambda: Run.objects.filter(pk=self.run_id, cancel_requested=True).exists())

    # --- committing ------------------------------------------------------------------------

    async def commit(self, *, final: bool = False) -> None:
        """`_commit_once`, tried again while the database is out of reach.

        A connection cut while a commit is on the wire (a server restart, a failover, a proxy
        dropping it) or a database that stays locked used to raise out of the engine, and the
        run was failed as crashed, its writes with it (found by a review). The writes are back in
        the buffers after a failed attempt, and the next attempt goes the locked path, which
        recognises an attempt whose answer was lost (`_settle`) and refuses a lease another
        worker took meanwhile (`LeaseLost`); so it is tried again after 0.25 s, doubling to 5 s,
        for up to `COMMIT_RETRY_S` — about a lease, after which the run is another worker's."""
        await retry_unreachable(lambda: self._commit_once(final=final), f"run {self.run_id}: commit")

    async def _commit_once(self, *, final: bool = False) -> None:
        """Write what is buffered (see the protocol), in the process's next group commit.

        Concurrent commits of one run (parallel branches) share a transaction: a caller whose
        writes an earlier caller already took along returns without a transaction of its own,
        or raises what that commit raised if it failed. A failed commit puts its writes and
        events back at the head of the buffers, so nothing is lost and a later commit retries them.
        """
        wanted, done, failures = self._buffered, self._committed, self._failures
        async with self._lock:
            if not final and done < wanted:
                if wanted <= self._committed:  # carried by a concurrent commit
                    if self._cancel_seen:
                        raise RunCancelled("run cancelled")
                    return
                if self._failures > failures and self._failure is not None and self._failure[0] >= wanted:
                    raise self._failure[1]  # carried by a concurrent commit that failed: not durable
            writes, events = self._writes, self._events
            self._writes, self._events = [], []
            taken, known = self._buffered, set(self._known_steps)
            self._next_head = None
            # A commit, once its writes are out of the buffers, runs to its end even if this caller
            # is cancelled meanwhile (the cancel is raised once they are made or put back).
            sent = _Sent(writes, events, doubt=self._doubt)
            alone = (commit_alone() if self._head is not None and sent.doubt is None and (writes or events)
                     and _lone_eligible(writes, final, self._pipeline_id) else None)
            if alone is not None:
                write = asyncio.ensure_future(self._write_alone(sent))
                write.add_done_callback(lambda _: alone())  # (also if it never ran: a loop shut down)
            else:
                write = asyncio.ensure_future(group_write(self.run_id, self._commit, sent, lock=_lock_runs))
            attempt, stopped = await _to_the_end(write)
            made = sent.made  # an earlier attempt this one found made (whether or not this one was)
            if made is not None:
                self._doubt = None
                writes, events = _without(writes, made.writes), _without(events, made.events)
                known |= {w.key for w in made.writes if isinstance(w, StepWrite)}
            try:
                payloads, cancel = attempt.result()
            except Exception as exc:  # not made (or not known to be): keep them
                if sent.last_seq is not None:  # its events were chained: it may have been made
                    self._doubt = sent
                self._head = None
                self._writes[:0], self._events[:0] = writes, events
                self._known_steps = known  # rows the rolled-back transaction inserted are not there
                self._failures += 1
                self._failure = (taken, exc)
                if made is not None:
                    await self._published(made.payloads)  # made, by the attempt whose answer was lost
                if self._on_pending is not None:
                    self._on_pending()  # buffered again: the flusher retries them
                if stopped is not None:
                    raise stopped from exc
                raise
            self._doubt = None
            if made is not None:
                payloads = [*made.payloads, *payloads]
            self._committed = taken
            self._cancel_seen = cancel
            self._head = self._next_head
            if stopped is not None:  # made; the cancel goes on
                raise stopped
        await self._published(payloads)
        if cancel and not final:
            raise RunCancelled("run cancelled")

    async def _published(self, payloads: list[dict[str, Any]]) -> None:
        """Committed events to the metrics, the listeners and the live page."""
        if payloads:
            if self._metrics is not None:
                self._metrics.observe(payloads)
            for listener in self.listeners:
                for payload in payloads:
                    listener(payload)
            if self.publish_events:
                await publish(payloads, self._team_id)

    def _redact_all(self, writes: list[Write], events: list[tuple[str, str, dict[str, Any]]]) -> tuple[
            list[Write], list[tuple[str, str, dict[str, Any]]]]:
        self._redactor = redactor = get_redactor(self._team_id)
        redact = _memo.for_redactor(redactor)
        return [_redacted(w, redact) for w in writes], [(type, key, redact(data)) for type, key, data in events]

    def _commit(self, sent: _Sent) -> tuple[list[dict[str, Any]], bool]:
        now = timezone.now()
        writes, events = sent.writes, sent.events
        if sent.doubt is None:
            writes, events = self._redact_all(writes, events)
        with transaction.atomic(savepoint=False):  # inside the group commit's transaction
            head = self._run_head()
            if sent.doubt is not None:
                writes, events = self._settle(sent, writes, events)
                if sent.made is not None and not writes and not events:
                    # Made, and nothing else to write. Unless the made attempt itself ended or
                    # paused the run (and so let its lease go), the lease is checked as for any
                    # commit: a retry after another worker took the run over returned as if all
                    # were well, and the engine went on beside that worker (a review).
                    ended = any(isinstance(w, RunWrite) and w.status != RunStatus.RUNNING for w in sent.made.writes)
                    if self.lease_owner and not ended and head.lease_owner != self.lease_owner:
                        raise LeaseLost(f"run {self.run_id} is now held by {head.lease_owner or 'nobody'}")
                    self._next_head = self._known_head(head)
                    return [], head.cancel_requested
                writes, events = self._redact_all(writes, events)
            if self.lease_owner and head.lease_owner != self.lease_owner:
                raise LeaseLost(f"run {self.run_id} is now held by {head.lease_owner or 'nobody'}")
            if not writes and not events:
                self._next_head = self._known_head(head)
                return [], head.cancel_requested
            update: dict[str, Any] = {}
            steps: dict[str, StepWrite] = {}
            ledger, usage, reviews, audit = [], [], [], []
            for w in writes:
                if isinstance(w, StepWrite):
                    steps[w.key] = _merge(steps.get(w.key), w)
                elif isinstance(w, LedgerWrite):
                    ledger.append(self._ledger_row(w, now))
                elif isinstance(w, UsageWrite):
                    usage.append(w)
                elif isinstance(w, ReviewWrite):
                    reviews.append(w)
                elif isinstance(w, AuditWrite):
                    audit.append(_audit_row(head.team_id, self.run_id, w, now))
                elif isinstance(w, RunWrite):
                    update.update(status=w.status, error=w.error, output=w.output)
                    if w.status != RunStatus.RUNNING:  # finished or paused: let the run go
                        update.update(lease_owner="", lease_until=None)
                    if w.status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED):
                        update["finished_at"] = now
            # Writes through the ORM and other modules first (they read results: row counts,
            # new ids, existence checks), then this run's own rows, which need no answer.
            if audit:
                AuditEntry.objects.bulk_create(audit)
            if usage:
                budgets.record([u.receipt for u in usage if u.receipt is not None])
            if update.get("status", RunStatus.RUNNING) != RunStatus.RUNNING:
                budgets.release_run(self.run_id)  # paused or ended: nothing of it is in flight any more
            if update.get("status") == RunStatus.CANCELLED:
                # Ended: nothing of it waits for a reviewer any more (no new item, none left pending).
                from orchestrator.actions.runs import close_pending_reviews

                reviews = []
                close_pending_reviews(self.run_id)
            for r in reviews:
                if not ReviewItem.objects.filter(run_id=self.run_id, step_key=r.step_key, status=ReviewItem.Status.PENDING).exists():
                    item = ReviewItem.objects.create(team_id=head.team_id, run_id=self.run_id, step_key=r.step_key,
                                                     reason=r.reason, context=r.context)
                    webhooks.enqueue(self._pipeline_id, "review.needed", {"run_id": self.run_id, "review_id": item.pk,
                                                                          "step_key": r.step_key, "reason": r.reason})
            if (update.get("status") == RunStatus.WAITING_REVIEW and not head.cancel_requested
                    and not ReviewItem.objects.filter(run_id=self.run_id, status=ReviewItem.Status.PENDING).exists()):
                # Every item was decided while the run still ran (a parallel branch's item is
                # announced before its sibling ends): paused now, it would wait for ever with
                # nothing left to decide (a review). It stays queued instead, in this
                # transaction, so it never leaves the active runs (another start could take its
                # place under a concurrent-runs limit); its execution claims it again.
                update.update(status=RunStatus.QUEUED, dispatched_at=now)
                events = [*events, ("run.resume_requested", "", {"by": None, "decided_while_running": True})]
                self.requeued = True
            if update.get("status") in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED):
                webhooks.enqueue(self._pipeline_id, f"run.{update['status']}", {
                    "run_id": self.run_id, "status": update["status"], "output": update.get("output"),
                    "error": update.get("error", "")})
            new_events = build_events(head, events, now)
            _chained(sent, head, new_events)
            with one_round_trip():  # on PostgreSQL: one query for all the writes
                for w in steps.values():
                    self._write_step(w, now)
                if update.get("status") == RunStatus.CANCELLED:  # after the step writes: they may start steps
                    update_row(StepRun, {"status": "cancelled", "finished_at": now, "error": "cancelled"},
                               {"run_id": self.run_id, "status": "running"})
                insert_rows(LedgerEntry, ledger)
                if usage:
                    self._write_usage(head, usage, update, now)
                if new_events:
                    insert_rows(RunEvent, new_events)
                    update.update(last_seq=head.last_seq, last_hash=head.last_hash)
                if update:
                    update_row(Run, update, {"id": self.run_id})
        self._next_head = self._known_head(head)
        return [event_payload(e) for e in new_events], head.cancel_requested

    def _settle(self, sent: _Sent, writes: list[Write], events: list[Any]) -> tuple[list[Write], list[Any]]:
        """Under the run's lock (so the attempt in doubt has ended on the server too): was it
        made? Its last event is there if and only if it was (an event appended meanwhile by an
        action does not hide it, as comparing heads would). If it was, what it carried is taken
        off this attempt (by identity) and its step rows count as known; `sent.made` tells the
        caller, which takes them off the buffers and publishes their events."""
        doubt = sent.doubt
        assert doubt is not None and doubt.last_seq is not None
        if not select_rows(RunEvent, ("id",), {"run_id": self.run_id, "seq": doubt.last_seq, "hash": doubt.last_hash}):
            return writes, events
        log.warning("run %s: a commit whose answer was lost had been made; it is not made again", self.run_id)
        sent.made = doubt
        self._known_steps |= {w.key for w in doubt.writes if isinstance(w, StepWrite)}
        return _without(writes, doubt.writes), _without(events, doubt.events)

    async def _write_alone(self, sent: _Sent) -> tuple[list[dict[str, Any]], bool]:
        """The commit in one round trip, or, if the head moved, in the next group commit."""
        result = await run_write(self._commit_alone, sent)
        if result is None:
            result = await group_write(self.run_id, self._commit, sent, lock=_lock_runs)
        return result

    def _known_head(self, head: RunHead) -> _KnownHead | None:
        """What a later one-round-trip commit may expect of the row (None where it cannot take one)."""
        return _KnownHead(self.run_id, head.team_id, head.last_seq, head.last_hash) if _lone_capable() else None

    def _commit_alone(self, sent: _Sent) -> tuple[list[dict[str, Any]], bool] | None:
        """A step's commit in one round trip (PostgreSQL, when no group is committing): the run
        row's update goes first, guarded, then the step, ledger, usage and event rows, in one
        multi-statement query that the server runs as one transaction and commits.

        The events are chained after the head the last commit left. The guard updates the row
        only if it still holds that head (and, with a lease, this store's lease owner); if it
        does not — an action appended an event, the lease moved — the guard divides by zero, the
        server makes none of it, and None sends the commit down the group path, which reads the
        head under its lock. Only step, ledger and usage writes without a budget receipt come
        here (`_lone_eligible`): what reads answers or takes other locks does not.

        A run's last commit comes here too when it ends the run as succeeded or failed: the run
        row's update sets its status, output and end, and lets the lease go. A statement after
        the guard then also requires that the run holds no budget reservation and its pipeline
        no enabled webhook subscribed to the run's end (what the group path's last commit gives
        back and queues); where
        either exists, it divides by zero and the group path does that work.
        """
        known = self._head
        assert known is not None and sent.doubt is None
        now = timezone.now()
        writes, events = self._redact_all(sent.writes, sent.events)
        head = _KnownHead(known.pk, known.team_id, known.last_seq, known.last_hash)
        steps: dict[str, StepWrite] = {}
        ledger, usage = [], []
        end: RunWrite | None = None
        for w in writes:
            if isinstance(w, StepWrite):
                steps[w.key] = _merge(steps.get(w.key), w)
            elif isinstance(w, LedgerWrite):
                ledger.append(self._ledger_row(w, now))
            elif isinstance(w, RunWrite):
                end = w  # (the last one counts, as in the group path)
            else:
                usage.append(w)
        new_events = build_events(head, events, now)
        _chained(sent, head, new_events)
        guard, params = _alone_guard(self.run_id, known, head, self.lease_owner, usage)
        # Ending the run: nothing for the group path's last commit to give back or queue. Checked
        # in a statement of its own after the guard, which locked the row: its snapshot sees a
        # reservation committed by a writer that held the row while the guard waited for it.
        then = [(_nothing_held_sql(), [self.run_id, self._pipeline_id, f"run.{end.status}"])] if end is not None else []
        known_steps = set(self._known_steps)
        try:
            with guarded_round_trip(guard, params, then) as answer:
                for w in steps.values():
                    self._write_step(w, now)
                insert_rows(LedgerEntry, ledger)
                insert_rows(UsageRecord, self._usage_rows(head.team_id, usage, now))
                insert_rows(RunEvent, new_events)
                if end is not None:
                    update_row(Run, {"status": end.status, "error": end.error, "output": end.output, "lease_owner": "",
                                     "lease_until": None, "finished_at": now}, {"id": self.run_id})
        except DataError as exc:
            self._known_steps = known_steps
            if getattr(exc.__cause__, "sqlstate", None) == "22012":  # the guard: the head moved
                return None
            raise
        except BaseException:
            self._known_steps = known_steps
            raise
        count_lone_commit()
        self._next_head = head
        return [event_payload(e) for e in new_events], bool(answer[0][1])

    def _run_head(self) -> RunHead:
        """The run's chain head and cancel flag, read (and on PostgreSQL locked) in the transaction.

        Actions append events to a running run too (cancel, review decisions), so the head is
        always read in the commit's transaction rather than remembered: on PostgreSQL by the
        group's lock statement (`_lock_runs`), which locked the row until the commit.
        """
        locked = _locked_head(self.run_id)
        if locked is not None:
            return RunHead(pk=self.run_id, **locked)
        return RunHead(pk=self.run_id, **select_row(Run, _HEAD_COLUMNS, self.run_id, for_update=True))

    def _write_step(self, w: StepWrite, now: Any) -> None:
        fields: dict[str, Any] = {"status": w.status, "attempt": w.attempt, "error": w.error}
        if w.agent:
            fields["agent_name"] = w.agent
        if w.input is not None:
            fields["input"] = w.input
        if w.finished:
            fields.update(output=w.output, finished_at=now, input_tokens=w.input_tokens, output_tokens=w.output_tokens,
                          tool_calls=w.tool_calls, tool_errors=w.tool_errors, tool_recoveries=w.tool_recoveries)
        if w.started:
            fields["started_at"] = now
        if w.key in self._known_steps:
            update_row(StepRun, fields, {"run_id": self.run_id, "key": w.key})
            return
        row = {"run_id": self.run_id, "key": w.key, "step_id": w.step_id, "kind": w.kind, "status": w.status,
               "attempt": w.attempt, "agent_name": w.agent, "input": w.input, "output": w.output if w.finished else None,
               "error": w.error, "input_tokens": w.input_tokens, "output_tokens": w.output_tokens,
               "tool_calls": w.tool_calls, "tool_errors": w.tool_errors, "tool_recoveries": w.tool_recoveries,
               "started_at": now, "finished_at": now if w.finished else None}
        insert_rows(StepRun, [row])
        self._known_steps.add(w.key)

    def _ledger_row(self, w: LedgerWrite, now: Any) -> dict[str, Any]:
        return {"run_id": self.run_id, "step_key": w.step_key, "attempt": w.attempt, "index": w.index, "kind": w.kind,
                "name": w.name, "request": w.request, "result": w.result, "created_at": now}

    def _usage_rows(self, team_id: int, usage: list[UsageWrite], now: Any) -> list[dict[str, Any]]:
        return [
            {"team_id": team_id, "run_id": self.run_id, "step_key": u.step_key, "agent_id": self._agents.get(u.agent),
             "provider": u.provider, "model": u.model, "input_tokens": u.input_tokens, "output_tokens": u.output_tokens,
             "cost_usd": Decimal(u.cost_usd), "created_at": budgets.usage_dated(u.receipt, now)}
            for u in usage
        ]

    def _write_usage(self, head: RunHead, usage: list[UsageWrite], update: dict[str, Any], now: Any) -> None:
        insert_rows(UsageRecord, self._usage_rows(head.team_id, usage, now))
        update.update(
            input_tokens=head.input_tokens + sum(u.input_tokens for u in usage),
            output_tokens=head.output_tokens + sum(u.output_tokens for u in usage),
            cost_usd=head.cost_usd + sum((Decimal(u.cost_usd) for u in usage), Decimal(0)),
        )


@functools.cache
def _load_sql() -> str:
    """The run row (totals, chain head), its pipeline and slug, by run id (what `_load` needs of them)."""
    q = connection.ops.quote_name
    run = Run._meta
    version = run.get_field("pipeline_version").related_model._meta
    pipeline = version.get_field("pipeline").related_model._meta
    column = {name: q(Run._meta.get_field(name).column) for name in (
        "team", "pipeline_version", "input_tokens", "output_tokens", "cost_usd", "last_seq", "last_hash")}
    return (f"SELECT r.{column['team']}, v.{q(version.get_field('pipeline').column)}, p.{q(pipeline.get_field('slug').column)}, "
            f"r.{column['input_tokens']}, r.{column['output_tokens']}, r.{column['cost_usd']}, "
            f"r.{column['last_seq']}, r.{column['last_hash']} "
            f"FROM {q(run.db_table)} r JOIN {q(version.db_table)} v ON v.{q(version.pk.column)} = r.{column['pipeline_version']} "
            f"JOIN {q(pipeline.db_table)} p ON p.{q(pipeline.pk.column)} = v.{q(version.get_field('pipeline').column)} "
            f"WHERE r.{q(run.pk.column)} = %s")


@functools.cache
def _agents_sql() -> str:
    q = connection.ops.quote_name
    meta = Agent._meta
    return (f"SELECT {q(meta.get_field('name').column)}, {q(meta.pk.column)} FROM {q(meta.db_table)} "
            f"WHERE {q(meta.get_field('team').column)} = %s")


@functools.cache
def _lone_capable() -> bool:
    return one_query_capable()


_LONE_ENDS = (RunStatus.SUCCEEDED, RunStatus.FAILED)


def _lone_eligible(writes: list[Write], final: bool = False, pipeline_id: int | None = None) -> bool:
    """Writes a one-round-trip commit can carry: step, ledger and usage rows (no budget receipt,
    whose counters take locks of their own); in a run's last commit, also the end of the run as
    succeeded or failed (of a run whose pipeline is known: the guard looks for its webhooks).
    Nothing that pauses or cancels the run, raises a review or writes audit rows."""
    ends = 0
    for w in writes:
        kind = type(w)
        if kind is StepWrite or kind is LedgerWrite or (kind is UsageWrite and w.receipt is None):
            continue
        if kind is RunWrite and final and pipeline_id is not None and w.status in _LONE_ENDS:
            ends += 1
            continue
        return False
    return ends > 0 if final else True


@functools.cache
def _nothing_held_sql() -> str:
    """Divides by zero unless the run (first parameter) holds no budget reservation and its
    pipeline (second) has no enabled webhook subscribed to the event (third: `run.succeeded`,
    `run.failed`) that the group path's last commit would queue for it (`webhooks.enqueue`)."""
    q = connection.ops.quote_name
    reservation, webhook = BudgetReservation._meta, Webhook._meta
    return (f"SELECT 1 / COUNT(*) FROM (SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM {q(reservation.db_table)} "
            f"WHERE {q(reservation.get_field('run').column)} = %s) "
            f"AND NOT EXISTS (SELECT 1 FROM {q(webhook.db_table)} "
            f"WHERE {q(webhook.get_field('pipeline').column)} = %s AND {q(webhook.get_field('enabled').column)} "
            f"AND {q(webhook.get_field('events').column)} @> jsonb_build_array(%s::text))) AS free")


@functools.cache
def _alone_guard_sql(leased: bool) -> str:
    q = connection.ops.quote_name
    meta = Run._meta
    column = {name: q(meta.get_field(name).column) for name in (
        "last_seq", "last_hash", "input_tokens", "output_tokens", "cost_usd", "lease_owner", "cancel_requested")}
    lease = f" AND {column['lease_owner']} = %s" if leased else ""
    return (f"WITH moved AS (UPDATE {q(meta.db_table)} SET {column['last_seq']} = %s, {column['last_hash']} = %s, "
            f"{column['input_tokens']} = {column['input_tokens']} + %s, "
            f"{column['output_tokens']} = {column['output_tokens']} + %s, "
            f"{column['cost_usd']} = {column['cost_usd']} + %s "
            f"WHERE {q(meta.pk.column)} = %s AND {column['last_seq']} = %s AND {column['last_hash']} = %s{lease} "
            f"RETURNING {column['cancel_requested']}) "
            f"SELECT 1 / COUNT(*), COALESCE(BOOL_OR({column['cancel_requested']}), FALSE) FROM moved")


def _alone_guard(run_id: int, known: _KnownHead, head: _KnownHead, lease_owner: str,
                 usage: list[UsageWrite]) -> tuple[str, list[Any]]:
    """The run row's update of a one-round-trip commit: the new head and totals, only where
    the row holds the head `known` (and `lease_owner`); none updated divides by zero."""
    params: list[Any] = [head.last_seq, head.last_hash, sum(u.input_tokens for u in usage),
                         sum(u.output_tokens for u in usage), sum((Decimal(u.cost_usd) for u in usage), Decimal(0)),
                         run_id, known.last_seq, known.last_hash]
    if lease_owner:
        params.append(lease_owner)
    return _alone_guard_sql(bool(lease_owner)), params


_HEAD_COLUMNS = ("team_id", "last_seq", "last_hash", "cancel_requested", "input_tokens", "output_tokens", "cost_usd",
                 "lease_owner")
_locked = threading.local()  # the heads a group commit's lock just read, by run id (its writer thread's)


def _lock_runs(run_ids: list[int]) -> None:
    """Lock the rows of a group commit's runs in one statement, in id order, before any of its
    writes runs (PostgreSQL; SQLite has a single writer): runs before budget counters everywhere.

    The same statement reads each run's head, which stays exactly so while the rows are locked
    and the group's writes run (each run's commit is the only one to change its row), so the
    runs' commits take it from here instead of a round trip each (`_run_head`)."""
    _locked.heads, _locked.transaction = {}, None
    if connection.vendor == "postgresql" and connection.atomic_blocks:
        _locked.heads = select_rows_by_pk(Run, _HEAD_COLUMNS, sorted(set(run_ids)), for_update=True)
        _locked.transaction = connection.atomic_blocks[0]  # (held: no later transaction is this object)


def _locked_head(run_id: int) -> dict[str, Any] | None:
    """The head `_lock_runs` read for `run_id` in this very transaction, once; None if it read
    none. Heads read in an earlier transaction (a group that failed before a run's commit got
    to its head, then a lone commit that locks nothing) are dropped, never used."""
    heads = getattr(_locked, "heads", None)
    if not heads:
        return None
    if not (connection.atomic_blocks and connection.atomic_blocks[0] is _locked.transaction):
        _locked.heads, _locked.transaction = {}, None
        return None
    return heads.pop(run_id, None)


_TEXT_FIELDS: dict[type, tuple[str, ...]] = {
    StepWrite: ("input", "output", "error"), LedgerWrite: ("name", "request", "result"),
    ReviewWrite: ("context",), RunWrite: ("output", "error"), AuditWrite: ("arguments", "reason"),
}


def _audit_row(team_id: int, run_id: int, w: AuditWrite, now) -> AuditEntry:
    """The audit row of a call the engine refused, like the gateway's rows for the calls it handles."""
    server, _, _ = w.tool.partition("__")
    return AuditEntry(team_id=team_id, principal_kind=PrincipalKind.AGENT, agent_name=w.agent[:64], run_id=run_id,
                      step_key=w.step_key[:200], call_id=w.call_id[:100], server_name=server[:32], tool_name=w.tool[:64],
                      arguments=w.arguments, status=w.status, error=w.reason, created_at=now)


def _redacted(write: Write, redact: Callable[[Any], Any]) -> Write:
    """A copy of `write` with secrets redacted from the fields that carry model or tool text."""
    names = _TEXT_FIELDS.get(type(write), ())
    return dataclasses.replace(write, **{n: redact(getattr(write, n)) for n in names}) if names else write


class _CleanStrings:
    """`Redactor.redact`, remembering the strings a redactor found nothing in.

    Every commit redacts the same dict keys and short values again (event field names, step
    ids, agent and model names, statuses); a string the current redactor left alone is left
    alone again without a scan. Same result as `redactor.redact` (the redactor is deterministic
    and the memory belongs to one redactor: a new one, with new secrets, starts empty).
    Bounded: strings up to `LONGEST` characters, at most `MAX` of them.
    """

    LONGEST = 200
    MAX = 20_000

    def __init__(self) -> None:
        self._current: tuple[Redactor | None, set[str]] = (None, set())

    def for_redactor(self, redactor: Redactor) -> Callable[[Any], Any]:
        current = self._current  # one read: writer threads may swap it meanwhile
        if current[0] is not redactor or len(current[1]) > self.MAX:
            current = self._current = (redactor, set())
        clean = current[1]
        text = redactor.text
        longest = self.LONGEST

        def scan(value: str) -> str:
            if value in clean:
                return value
            result = text(value)
            if result is value and len(value) <= longest:
                clean.add(value)
            return result

        def redact(value: Any) -> Any:
            if isinstance(value, str):
                return scan(value)
            if isinstance(value, dict):
                return {scan(k) if isinstance(k, str) else k: redact(v) for k, v in value.items()}
            if isinstance(value, list | tuple):
                return type(value)(redact(v) for v in value)
            return value

        return redact


_memo = _CleanStrings()


def _merge(earlier: StepWrite | None, later: StepWrite) -> StepWrite:
    """Two writes of one step in one commit: the later wins, keeping `started` and the input."""
    if earlier is None:
        return later
    later.started = later.started or earlier.started
    if later.input is None:
        later.input = earlier.input
    if not later.agent:
        later.agent = earlier.agent
    return later


_background: set[asyncio.Task[Any]] = set()


async def _to_the_end(aw: Awaitable[T]) -> tuple[asyncio.Future[T], asyncio.CancelledError | None]:
    """Run `aw` to its end even if the caller is cancelled meanwhile; return it (done) and the
    caller's cancel, if one came, for the caller to raise once it has kept or put back what `aw`
    did. A commit's writes, once taken from the buffers, are made or put back, never dropped
    because the task waiting for them was cancelled (at a run's end the flusher is cancelled,
    and a worker shutting down cancels its runs)."""
    inner = asyncio.ensure_future(aw)
    stopped: asyncio.CancelledError | None = None
    while not inner.done():
        try:
            await asyncio.shield(inner)
        except asyncio.CancelledError as exc:
            if inner.cancelled():
                raise
            stopped = exc
        except Exception:  # `aw` failed: the caller reads it from the future
            pass
    return inner, stopped

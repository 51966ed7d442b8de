"""The threads async code hands its database writes to.

One thread for SQLite (it has one writer anyway), a few otherwise. A plain executor
rather than `sync_to_async`: the hand-off costs a fraction as much, and the engine commits
once per step and the gateway audits every call. The engine's commits go through
`group_write`: the commits of concurrent runs share one transaction (group commit).

With PostgreSQL's connection pool (settings `DB_POOL_MAX`) a thread holds a connection only
for the duration of one write and hands it back right after (`release_connection`), so the
writer threads share the process's few pooled connections with requests instead of each
keeping one. Without a pool, a thread keeps its connection across writes and closes it when
the thread ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import DatabaseError, Error, connection, connections

from config.sql_rows import sending_gathered

T = TypeVar("T")

_executors: list[ThreadPoolExecutor] = []
_lock = threading.Lock()
_local = threading.local()


class _ConnectionCloser:
    """Lives in a writer thread's locals; when the thread ends, its connections are closed."""

    def __del__(self) -> None:
        connections.close_all()


def _init_thread() -> None:
    _local.closer = _ConnectionCloser()


def _executor() -> ThreadPoolExecutor:
    with _lock:
        if not _executors:
            workers = 1 if connection.vendor == "sqlite" else 4
            _executors.append(ThreadPoolExecutor(max_workers=workers, thread_name_prefix="agentdeck-db-writer",
                                                 initializer=_init_thread))
        return _executors[0]


def pooled() -> bool:
    """Whether this process takes its database connections from a pool (PostgreSQL, `DB_POOL_MAX`)."""
    return bool(connection.settings_dict.get("OPTIONS", {}).get("pool"))


def release_connection() -> None:
    """Hand this thread's pooled connection back (outside a transaction); without a pool, keep it."""
    if pooled() and connection.connection is not None and not connection.in_atomic_block:
        connection.close()


def releasing(func: Callable[..., T]) -> Callable[..., T]:
    """`func`, handing its thread's pooled connection back when it returns: for database work
    run on threads no request cycle closes (`sync_to_async(..., thread_sensitive=False)`)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return func(*args, **kwargs)
        finally:
            release_connection()

    return wrapper


def _guarded(func: Callable[..., T], *args: Any) -> T:
    if connection.errors_occurred:
        # Keep the connection across writes; drop it only once it broke.
        connection.close_if_unusable_or_obsolete()
    try:
        return func(*args)
    finally:
        release_connection()


async def run_write(func: Callable[..., T], *args: Any) -> T:
    """Run `func(*args)` (which opens its own transaction) on a writer thread."""
    return await asyncio.get_running_loop().run_in_executor(_executor(), _guarded, func, *args)


def write_job(func: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """`run_write`'s job, submitted now and not awaited: a plain future, not a task, so a loop's
    teardown (which cancels every task left) does not cancel it. Shield it to wait for its
    answer despite a cancel: a write already on its thread commits whatever its caller does."""
    return asyncio.get_running_loop().run_in_executor(_executor(), _guarded, func, *args)


class _GroupCommit:
    """Group commit: writes of concurrent callers (e.g. the steps of many runs) in one transaction.

    A caller's write waits while one group is being committed; everything that arrived
    meanwhile goes in the next transaction together, so one fsync carries many callers' writes
    and a lone caller pays no more than its own commit (no timer, no added wait). Each write
    runs in its own savepoint when the group has more than one, so an exception (a lost lease,
    a failed statement) rolls back and reaches only its caller. Results are handed back only
    once the group's transaction has committed.
    """

    def __init__(self, max_batch: int = 256):
        self.max_batch = max_batch
        self._queue: list[_Item] = []
        self._lock = threading.Lock()
        self._draining = False
        self._committing = False  # a group's transaction is under way (not yet settling its callers)
        self._alone = 0  # writes being committed on their own (`commit_alone`)
        self.transactions = 0  # groups committed, for tests and benchmarks
        self.writes = 0

    async def submit(self, order: Any, func: Callable[..., T], *args: Any,
                     lock: Callable[[list[Any]], None] | None = None) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        item = (order, func, args, future, loop, lock)
        with self._lock:
            self._queue.append(item)
            start, self._draining = not self._draining, True
        if start:
            try:
                # Not `run_in_executor`: its wrapper future would wake this loop a second time
                # per commit, for a result nobody reads (the caller's `future` carries it).
                _executor().submit(self._drain)
            except BaseException:  # no writer thread to run it: the write is not made
                with self._lock:
                    self._draining = False
                    self._queue = [queued for queued in self._queue if queued is not item]
                raise
        return await future

    def _drain(self) -> None:
        """Commit one group, then hand the thread back: the next group is a new executor job, so
        `run_write` work queued meanwhile (claims, lease renewals, reservations, loads) runs in
        between instead of waiting for the stream of commits to stop (SQLite has one thread)."""
        try:
            with self._lock:
                batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
                if not batch:
                    self._draining = False
                    return
                self._committing = True
            # One lock order for every group: rows a write locks (a run's) are taken by key.
            batch.sort(key=lambda item: item[0])
            self._commit(batch)
        except BaseException:
            with self._lock:
                self._draining = self._committing = False
            raise
        with self._lock:
            if not self._queue:
                self._draining = False
                return
        try:
            _executor().submit(self._drain)
        except BaseException as exc:  # no writer thread any more (shutdown): nobody will commit these
            with self._lock:
                stranded, self._queue, self._draining = self._queue, [], False
            for *_, future, loop, _ in stranded:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_settle, future, False, exc)
            raise

    def _commit(self, batch: list[_Item]) -> None:
        from django.db import transaction

        outcomes: list[tuple[bool, Any]] = []
        try:
            if connection.errors_occurred:
                connection.close_if_unusable_or_obsolete()
            alone = len(batch) == 1
            lazy = _LazySavepoints() if not alone and connection.vendor == "postgresql" else None
            if lazy is not None:
                # Foreign keys are checked when each statement ends, not at the COMMIT (Django
                # makes them deferrable, initially deferred): a write whose row points at what was
                # deleted meanwhile (an agent) then fails in its own savepoint, alone, instead of
                # failing the COMMIT and with it every run of the group. Held: it goes in front of
                # the group's first write, in the same query.
                lazy.held.append("SET CONSTRAINTS ALL IMMEDIATE")
            with transaction.atomic():
                _lock_keys(batch)
                with connection.execute_wrapper(lazy) if lazy is not None else contextlib.nullcontext():
                    for part, (_, func, args, _, _, _) in enumerate(batch):
                        try:
                            with lazy.savepoint(part) if lazy is not None else transaction.atomic(savepoint=not alone):
                                value = func(*args)
                            outcomes.append((True, value))  # (after the block: its end may still fail it)
                        except Exception as exc:  # this caller's write only: its savepoint is rolled back
                            outcomes.append((False, exc))
                    if lazy is not None:
                        lazy.finish()  # the writes still held, in one query
                        for part, exc in lazy.failed.items():  # refused by the server: failed alone
                            outcomes[part] = (False, exc)
                        lazy.drop_failed_callbacks()
                if lazy is not None and lazy.commit_error is not None:
                    raise lazy.commit_error
                if lazy is not None and (lazy.lost is not None or _aborted()):  # PostgreSQL would answer the COMMIT with a rollback
                    raise DatabaseError("a write of the group left its transaction unable to commit") from lazy.lost
                if not alone and connection.needs_rollback:  # a savepoint could not be rolled back: the group cannot commit
                    raise DatabaseError("a write of the group left its transaction unable to commit")
            with self._lock:  # (lone commits count here too, from other writer threads)
                self.transactions += 1
                self.writes += len(batch)
        except Exception as exc:  # the commit itself failed: so did every write in it
            outcomes = [(False, exc)] * len(batch)
        except BaseException as exc:
            outcomes = [(False, exc)] * len(batch)
            raise
        finally:
            release_connection()
            self._committing = False  # (before its callers hear: one that commits next finds it idle)
            for (_, _, _, future, loop, _), (ok, value) in zip(batch, outcomes, strict=False):
                with contextlib.suppress(RuntimeError):  # the caller's loop is gone: nobody to tell
                    loop.call_soon_threadsafe(_settle, future, ok, value)


class _LazySavepoints:
    """Each write of a PostgreSQL group in a savepoint of its own, at no round trip of its own.

    A write whose only statement is its one query from `sql_rows.one_round_trip` (whose
    result nobody reads) is held, with its `SAVEPOINT` and `RELEASE SAVEPOINT` around it, and
    the held writes of the group go to the server together: in front of the group's next
    statement of another kind, or at the group's end in one query with the group's `COMMIT`.
    A group of k such writes costs one round trip for all of them and the COMMIT, not k + 1. Should the server refuse that
    query, everything it did is rolled back (to a savepoint sent at its head) and the held
    writes are sent again one by one, each in its savepoint: the refused ones fail alone
    (`failed`, by position in the group; their callers get the error), the others stand.

    A write that sends other statements keeps the earlier scheme: its `SAVEPOINT` (and the
    previous write's `RELEASE`) is held and sent in front of its first write, in the same
    query when that is its `one_round_trip` query, otherwise just before it; reads go without
    them. A write that sent nothing needs no savepoint (none is sent); one that failed after
    sending is rolled back to its savepoint, as `transaction.atomic(savepoint=True)` would do,
    which costs a round trip only then. The `COMMIT` releases every savepoint still open.
    Installed as the connection's execute wrapper for the group's writes."""

    def __init__(self) -> None:
        self.held: list[str] = []
        self.count = 0
        self.sent = False
        self.lost: BaseException | None = None  # why the group's transaction can no longer commit
        self.deferred: list[tuple[int, str, str]] = []  # (position in the group, savepoint, query) not sent yet
        self.failed: dict[int, BaseException] = {}  # held writes the server refused, by position
        self.callbacks: dict[int, tuple[int, int]] = {}  # each finished write's `on_commit` callbacks (from, to)
        self.part = -1  # the write in progress
        self.name = ""
        self.flushes = 0
        self.commit_error: BaseException | None = None  # that COMMIT failed (the group fails with its error)

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        if self.part >= 0 and not self.sent and not many and params is None and sending_gathered():
            # The write's one query, nothing of the write sent before it: held, to go with the group's next query.
            if self.deferred and self.deferred[-1][0] == self.part:  # its second one: after the first
                self.deferred[-1] = (self.part, self.name, f"{self.deferred[-1][2]};\n{sql}")
            else:
                self.held.remove(f"SAVEPOINT {self.name}")
                self.deferred.append((self.part, self.name, sql))
            return None
        if self.deferred:
            with connection.cursor() as cursor:  # a client cursor: this statement's may be a named one
                self._flush(cursor)
        if not self.held or (not many and sql.lstrip()[:7].upper() == "SELECT "):
            # A read needs no savepoint (a lock it takes is kept to the COMMIT either way): the held
            # statements wait for the write's first write. A read that fails aborts the group's
            # transaction, which no savepoint of this write restores (`savepoint` finds it so).
            return execute(sql, params, many, context)
        held, self.held, self.sent = ";\n".join(self.held), [], True
        if not many and sending_gathered():
            return execute(f"{held};\n{sql}", params, many, context)
        cursor = context["cursor"]  # Django's; its driver cursor runs one statement whatever `execute` is here
        _send(cursor, held)
        return execute(sql, params, many, context)

    def _flush(self, cursor: Any, commit: bool = False) -> None:
        """Send the held writes (and held statements) as one query; if the server refuses it,
        undo it and send the writes one by one. A refusal of the write in progress is raised
        (to it); one of an earlier write is recorded in `failed`. With `commit`, the query ends
        with the group's `COMMIT` (when it goes through; Django's own COMMIT then finds no
        transaction and psycopg sends nothing)."""
        try:
            self._send_held(cursor, commit)
        except Error:
            raise  # a refusal of the write in progress, or the group is lost (`_sure`)
        except BaseException as exc:  # not the database's answer: what the held writes became is unknown
            self.lost = self.lost or exc
            raise

    def _send_held(self, cursor: Any, commit: bool) -> None:
        deferred, self.deferred = self.deferred, []
        self.flushes += 1
        mark = f"agentdeck_flush_{self.flushes}"  # never released: later savepoints may nest in it
        # The write in progress keeps its own `SAVEPOINT` held, for its first write: the held writes
        # of earlier ones must not go inside it (its rollback would take them along).
        current = f"SAVEPOINT {self.name}" if self.part >= 0 else None
        statements = [*(h for h in self.held if h != current), f"SAVEPOINT {mark}"]
        self.held = [current] if current in self.held else []
        for part, name, sql in deferred:
            statements += [f"SAVEPOINT {name}", sql]
            if part != self.part:
                statements.append(f"RELEASE SAVEPOINT {name}")
        if any(part == self.part for part, _, _ in deferred):
            self.sent = True  # its savepoint is open on the server now: released or rolled back at its end
        try:  # (a refused write stops the query before its COMMIT; a COMMIT that fails ends the transaction)
            _send(cursor, ";\n".join([*statements, "COMMIT"] if commit else statements))
            return
        except Error as exc:
            status = _transaction_status()
            if commit and status == "IDLE":  # the COMMIT itself failed: nothing of the group is made
                self.commit_error = exc
                raise
            if status != "INERROR":  # no transaction to roll back into (the connection broke): lost, with its cause
                self.lost = self.lost or exc
                raise
        self._undo(cursor, mark)
        for part, name, sql in deferred:
            current = part == self.part
            try:  # (a RELEASE held for later would go after the held `SAVEPOINT` of the write in progress)
                _send(cursor, f"SAVEPOINT {name};\n{sql}" if current else f"SAVEPOINT {name};\n{sql};\nRELEASE SAVEPOINT {name}")
            except Error as exc:
                self._undo(cursor, name)
                self.failed[part] = exc  # the write in progress fails at its end even if it catches this
                if current:
                    raise
                self._sure(cursor, f"RELEASE SAVEPOINT {name}")

    def _undo(self, cursor: Any, name: str) -> None:
        self._sure(cursor, f"ROLLBACK TO SAVEPOINT {name}")

    def _sure(self, cursor: Any, sql: str) -> None:
        """A statement the group cannot do without: if it fails, the group is lost."""
        try:
            _send(cursor, sql)
        except Error as exc:  # the transaction stays aborted (or its savepoints are not what they seem)
            self.lost = self.lost or exc
            raise

    def finish(self) -> None:
        """At the group's end: send the writes still held, with the group's COMMIT."""
        self.part = -1
        if self.deferred and self.lost is None:
            try:
                # The COMMIT only where the group's block is the transaction (never an outer one's).
                outermost = len(connection.atomic_blocks) == 1 and connection.commit_on_exit
                with connection.cursor() as cursor:
                    self._flush(cursor, commit=outermost and not (connection.needs_rollback or _aborted()))
            except Error as exc:  # (no write in progress to raise to: the group cannot commit)
                self.lost = self.lost or exc

    def drop_failed_callbacks(self) -> None:
        """Take the `on_commit` callbacks of the held writes the server refused off the list."""
        for part in sorted(self.failed, key=lambda p: self.callbacks.get(p, (0, 0))[0], reverse=True):
            start, stop = self.callbacks.get(part, (0, 0))
            del connection.run_on_commit[start:stop]

    @contextlib.contextmanager
    def savepoint(self, part: int) -> Any:
        if self.lost is not None:
            raise DatabaseError("an earlier write of the group left its transaction unable to commit") from self.lost
        self.count += 1
        self.part, self.name = part, f"agentdeck_group_{self.count}"
        name = self.name
        self.held.append(f"SAVEPOINT {name}")
        self.sent = False
        callbacks = len(connection.run_on_commit)
        try:
            yield
            if part in self.failed:  # its held writes were refused, and it caught that and went on
                raise self.failed[part]
            if connection.needs_rollback or _aborted():  # a database error swallowed inside
                raise DatabaseError("the write went on after a database error")
        except BaseException as exc:
            self.failed.pop(part, None)  # failed here, with everything it did
            connection.needs_rollback = False  # as a savepoint's atomic block: rolled back here, not the group
            del connection.run_on_commit[callbacks:]
            self.part = -1
            if self.sent:
                with contextlib.suppress(Error):  # if it fails, the transaction stays aborted: below
                    with connection.cursor() as cursor:
                        cursor.execute(f"ROLLBACK TO SAVEPOINT {name}")
            elif self.deferred and self.deferred[-1][0] == part:
                self.deferred.pop()  # its held query: nothing of this write reached the server
            else:
                self.held.remove(f"SAVEPOINT {name}")  # nothing of this write reached the server
            if _aborted():  # a failure no savepoint of this write covers (a read before it, a failed rollback)
                self.lost = exc
            raise
        self.part = -1
        self.callbacks[part] = (callbacks, len(connection.run_on_commit))
        if self.sent:
            self.held.append(f"RELEASE SAVEPOINT {name}")
        elif not (self.deferred and self.deferred[-1][0] == part):
            self.held.remove(f"SAVEPOINT {name}")


def _send(cursor: Any, sql: str) -> None:
    """`sql` straight to the driver (no execute wrappers), its errors as Django's."""
    with cursor.db.wrap_database_errors:
        cursor.cursor.execute(sql)


def _aborted() -> bool:
    """Whether this thread's PostgreSQL transaction failed (the driver's own state: no round trip)."""
    return _transaction_status() == "INERROR"


def _transaction_status() -> str:
    """The driver's view of this thread's PostgreSQL connection: IDLE, INTRANS, INERROR, …"""
    raw = connection.connection
    return "" if raw is None else raw.info.transaction_status.name


_Item = tuple[Any, Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]", asyncio.AbstractEventLoop,
              Callable[[list[Any]], None] | None]


def _lock_keys(batch: list[_Item]) -> None:
    """Before any write of the group runs, lock the rows its writes will lock, all at once and
    in key order (`lock(keys)`, e.g. one `SELECT ... ORDER BY id FOR UPDATE` of the runs).

    Writes lock other shared rows too (budget counters); if a group took run N, then a counter,
    then waited on run N+1, it could deadlock with a writer holding run N+1 and waiting on
    that counter. Taken up front, the order is "the rows by key, then the rest" everywhere."""
    keys: dict[Callable[[list[Any]], None], list[Any]] = {}
    for order, _, _, _, _, lock in batch:
        if lock is not None:
            keys.setdefault(lock, []).append(order)
    for lock, wanted in keys.items():
        if len(wanted) > 1:  # a lone write locks its row itself
            lock(sorted(set(wanted)))


_group = _GroupCommit()


async def group_write(order: Any, func: Callable[..., T], *args: Any,
                      lock: Callable[[list[Any]], None] | None = None) -> T:
    """Run `func(*args)` on a writer thread inside a transaction shared with concurrent callers.

    `func` runs inside the group's transaction (its own `transaction.atomic()` nests);
    `order` sorts the group's writes (e.g. a run id) so row locks are always taken in one
    order, and `lock`, if given, is called first in the transaction with the sorted keys of
    every write of the group that passed the same `lock` (to lock all their rows at once).
    Raises what `func` raised, or what the group's commit raised: then none of its writes
    was made.
    """
    return await _group.submit(order, func, *args, lock=lock)


def group_commit_stats() -> tuple[int, int]:
    """(transactions committed, writes they carried) by `group_write` in this process, and by
    callers that committed a write alone on the group's behalf (`count_lone_commit`)."""
    return _group.transactions, _group.writes


def commit_alone() -> Callable[[], None] | None:
    """Reserve the process's one write committed on its own (rather than through `group_write`,
    e.g. the store's one-round-trip commit) if no group commit is queued or under way and no
    other write is committing alone; returns the release (call it once that write is over), or
    None: then join a group, which carries the writes that come along in one transaction
    instead of each paying its own commit. Checked and reserved under the group's lock."""
    with _group._lock:
        if _group._committing or _group._queue or _group._alone:
            return None
        _group._alone += 1
    released = threading.Event()

    def release() -> None:
        if not released.is_set():
            released.set()
            with _group._lock:
                _group._alone -= 1

    return release


def count_lone_commit() -> None:
    """A caller committed one write in a transaction of its own instead of a group's (e.g. the
    store's one-round-trip commit): counted in `group_commit_stats` as a group of one."""
    with _group._lock:
        _group.transactions += 1
        _group.writes += 1


def close_writer_connections() -> None:
    """Stop the writer threads, closing their connections (tests, shutdown)."""
    with _lock:
        if _executors:
            _executors.pop().shutdown(wait=True)


class BatchWriter:
    """Small writes from many coroutines, committed in batches by one thread.

    Each kind of write registers a `flush(items) -> results` that runs a whole batch in one
    transaction. `await writer.submit(kind, item)` returns once its batch is committed, so
    a lone caller pays one commit and concurrent callers share one. A kind registered as
    not durable commits without waiting for the disk (SQLite `synchronous=OFF`, PostgreSQL
    `synchronous_commit = off`): right for counters, wrong for audit rows.
    """

    def __init__(self, name: str, max_batch: int = 500):
        self.name = name
        self.max_batch = max_batch
        self._kinds: dict[str, tuple[Callable[[list[Any]], list[Any]], bool]] = {}
        self._queues: dict[str, list[tuple[Any, asyncio.Future[Any], asyncio.AbstractEventLoop]]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None

    def register(self, kind: str, flush: Callable[[list[Any]], list[Any]], durable: bool = True) -> None:
        self._kinds[kind] = (flush, durable)
        self._queues[kind] = []

    async def submit(self, kind: str, item: Any) -> Any:
        return await self.enqueue(kind, item)

    def enqueue(self, kind: str, item: Any) -> asyncio.Future[Any]:
        """Queue `item`; its future (a plain future, not a task: a loop's teardown does not cancel it)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            self._queues[kind].append((item, future, loop))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"agentdeck-{self.name}", daemon=True)
                self._thread.start()
            self._wake.notify()
        return future

    def _run(self) -> None:
        _init_thread()
        while True:
            with self._lock:
                while not any(self._queues.values()):
                    if not self._wake.wait(timeout=60):
                        self._thread = None
                        return
                batches = {}
                for kind, queue in self._queues.items():
                    if queue:
                        batches[kind], self._queues[kind] = queue[: self.max_batch], queue[self.max_batch :]
            try:
                for kind, batch in batches.items():
                    self._flush(kind, batch)
            except BaseException:
                with self._lock:
                    self._thread = None  # the next submit starts another
                raise

    def _flush(self, kind: str, batch: list[tuple[Any, asyncio.Future[Any], asyncio.AbstractEventLoop]]) -> None:
        from mcpgateway.audit_batch import row_error

        flush, durable = self._kinds[kind]
        try:
            outcomes = self._write(flush, durable, [item for item, _, _ in batch])
        except Exception as exc:
            if len(batch) > 1 and row_error(exc):  # one caller's data: only its write fails, not its neighbours'
                outcomes = [self._alone(flush, durable, item) for item, _, _ in batch]
            else:  # the database failed: so did each write of the batch
                outcomes = [(False, exc)] * len(batch)
        finally:
            release_connection()
        for (_, future, loop), (ok, value) in zip(batch, outcomes, strict=True):
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits for it
                loop.call_soon_threadsafe(_settle, future, ok, value)

    def _alone(self, flush: Callable[[list[Any]], list[Any]], durable: bool, item: Any) -> tuple[bool, Any]:
        try:
            return self._write(flush, durable, [item])[0]
        except Exception as exc:
            return False, exc

    @staticmethod
    def _write(flush: Callable[[list[Any]], list[Any]], durable: bool, items: list[Any]) -> list[tuple[bool, Any]]:
        from django.db import transaction

        if connection.errors_occurred:
            connection.close_if_unusable_or_obsolete()
        with _durability(durable), transaction.atomic():
            if not durable and connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL synchronous_commit TO OFF")
            results = flush(items)
        return [(True, r) for r in results]


class _durability:
    """On SQLite, commit without fsync for the duration (a connection-level pragma)."""

    def __init__(self, durable: bool):
        self.change = not durable and connection.vendor == "sqlite"

    def __enter__(self) -> None:
        if self.change:
            connection.ensure_connection()
            connection.connection.execute("PRAGMA synchronous=OFF")

    def __exit__(self, *exc: object) -> None:
        if self.change:
            connection.connection.execute("PRAGMA synchronous=FULL")


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)

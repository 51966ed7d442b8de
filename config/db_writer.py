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
            # One lock order for every group: rows a write locks (a run's) are taken by key.
            batch.sort(key=lambda item: item[0])
            self._commit(batch)
        except BaseException:
            with self._lock:
                self._draining = False
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
            with transaction.atomic():
                _lock_keys(batch)
                with connection.execute_wrapper(lazy) if lazy is not None else contextlib.nullcontext():
                    for _, func, args, _, _, _ in batch:
                        try:
                            with lazy.savepoint() if lazy is not None else transaction.atomic(savepoint=not alone):
                                outcomes.append((True, func(*args)))
                        except Exception as exc:  # this caller's write only: its savepoint is rolled back
                            outcomes.append((False, exc))
                if lazy is not None and lazy.lost is not None:  # PostgreSQL would answer the COMMIT with a rollback
                    raise DatabaseError("a write of the group left its transaction unable to commit") from lazy.lost
                if not alone and connection.needs_rollback:  # a savepoint could not be rolled back: the group cannot commit
                    raise DatabaseError("a write of the group left its transaction unable to commit")
            self.transactions += 1
            self.writes += len(batch)
        except Exception as exc:  # the commit itself failed: so did every write in it
            outcomes = [(False, exc)] * len(batch)
        except BaseException as exc:
            outcomes = [(False, exc)] * len(batch)
            raise
        finally:
            release_connection()
            for (_, _, _, future, loop, _), (ok, value) in zip(batch, outcomes, strict=False):
                with contextlib.suppress(RuntimeError):  # the caller's loop is gone: nobody to tell
                    loop.call_soon_threadsafe(_settle, future, ok, value)


class _LazySavepoints:
    """Each write of a PostgreSQL group in a savepoint of its own, at no round trip of its own.

    `SAVEPOINT` (and the previous write's `RELEASE SAVEPOINT`) are held and sent in front of
    the write's first statement: in the same query when that statement is the write's one
    query from `sql_rows.one_round_trip` (whose result nobody reads: psycopg reports a
    multi-statement query's first result), otherwise just before it; reads go without them.
    The last `RELEASE` goes with the `COMMIT`, which releases every savepoint. A write that
    sent nothing needs no savepoint (none is sent); one that failed after sending is rolled
    back to its savepoint, as `transaction.atomic(savepoint=True)` would do, which costs a
    round trip only then. Installed as the connection's execute wrapper for the group's writes."""

    def __init__(self) -> None:
        self.held: list[str] = []
        self.count = 0
        self.sent = False
        self.lost: BaseException | None = None  # why the group's transaction can no longer commit

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        if not self.held or (not many and sql.lstrip()[:7].upper() == "SELECT "):
            # A read needs no savepoint (a lock it takes is kept to the COMMIT either way): the held
            # statements wait for the write's first write. A read that fails aborts the group's
            # transaction, which no savepoint of this write restores (`savepoint` finds it so).
            return execute(sql, params, many, context)
        held, self.held, self.sent = ";\n".join(self.held), [], True
        if not many and sending_gathered():
            return execute(f"{held};\n{sql}", params, many, context)
        cursor = context["cursor"]  # Django's; its driver cursor runs one statement whatever `execute` is here
        with cursor.db.wrap_database_errors:
            cursor.cursor.execute(held)
        return execute(sql, params, many, context)

    @contextlib.contextmanager
    def savepoint(self) -> Any:
        if self.lost is not None:
            raise DatabaseError("an earlier write of the group left its transaction unable to commit") from self.lost
        self.count += 1
        name = f"agentdeck_group_{self.count}"
        self.held.append(f"SAVEPOINT {name}")
        self.sent = False
        callbacks = len(connection.run_on_commit)
        try:
            yield
            if connection.needs_rollback or _aborted():  # a database error swallowed inside
                raise DatabaseError("the write went on after a database error")
        except BaseException as exc:
            connection.needs_rollback = False  # as a savepoint's atomic block: rolled back here, not the group
            del connection.run_on_commit[callbacks:]
            if self.sent:
                with contextlib.suppress(Error):  # if it fails, the transaction stays aborted: below
                    with connection.cursor() as cursor:
                        cursor.execute(f"ROLLBACK TO SAVEPOINT {name}")
            else:
                self.held.remove(f"SAVEPOINT {name}")  # nothing of this write reached the server
            if _aborted():  # a failure no savepoint of this write covers (a read before it, a failed rollback)
                self.lost = exc
            raise
        if self.sent:
            self.held.append(f"RELEASE SAVEPOINT {name}")
        else:
            self.held.remove(f"SAVEPOINT {name}")


def _aborted() -> bool:
    """Whether this thread's PostgreSQL transaction failed (the driver's own state: no round trip)."""
    from psycopg import pq

    raw = connection.connection
    return raw is not None and raw.info.transaction_status == pq.TransactionStatus.INERROR


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
    """(transactions committed, writes they carried) by `group_write` in this process."""
    return _group.transactions, _group.writes


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
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            self._queues[kind].append((item, future, loop))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"agentdeck-{self.name}", daemon=True)
                self._thread.start()
            self._wake.notify()
        return await future

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
            for kind, batch in batches.items():
                self._flush(kind, batch)

    def _flush(self, kind: str, batch: list[tuple[Any, asyncio.Future[Any], asyncio.AbstractEventLoop]]) -> None:
        from django.db import transaction

        flush, durable = self._kinds[kind]
        try:
            if connection.errors_occurred:
                connection.close_if_unusable_or_obsolete()
            with _durability(durable), transaction.atomic():
                if not durable and connection.vendor == "postgresql":
                    with connection.cursor() as cursor:
                        cursor.execute("SET LOCAL synchronous_commit TO OFF")
                results = flush([item for item, _, _ in batch])
            outcomes = [(True, r) for r in results]
        except Exception as exc:  # the batch failed as a whole: so did each write in it
            outcomes = [(False, exc)] * len(batch)
        finally:
            release_connection()
        for (_, future, loop), (ok, value) in zip(batch, outcomes, strict=True):
            loop.call_soon_threadsafe(_settle, future, ok, value)


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

"""Audit rows written in batches, off the request path (the /mcp fast path).

A call from an external MCP client does not wait for its audit row's commit: the row is
queued here and a writer thread commits queued rows together, `GATEWAY_AUDIT_FLUSH_MS`
after the first of them arrived or as soon as `GATEWAY_AUDIT_BATCH_ROWS` are waiting,
whichever comes first (durable commits, in queue order, one transaction per batch).

The window: a row is in the database at most about `GATEWAY_AUDIT_FLUSH_MS` (+ one
commit) after its call returned, while the database accepts writes. `flush()` waits until
everything queued before it is committed; a normal stop (daphne's SIGTERM, interpreter
exit, the endpoint's `aclose()`) flushes; only a hard kill (SIGKILL, power loss), or a stop
while the database stays unreachable past the flush timeout (logged as an error), can lose
the rows still queued.

Every row is written, never dropped because of the others:
- a batch the database refuses is written again row by row, each in its own transaction,
  so one bad row (a value the database cannot store, a reference that no longer exists)
  cannot take the other callers' rows with it; a row refused on its own is written with its
  arguments and result replaced by a note saying why (and, if that is refused too, with its
  grant reference dropped into the note). Only a row refused even then is lost, logged as an
  error with its call's identity, and `flush()` reports False;
- when the database itself fails (connection lost, locked, unreachable: any error that is not
  about one row's values), the rows go back to the head of the queue and are retried with
  backoff (up to `RETRY_MAX_S` apart) for as long as it takes; a row counts as done only once
  committed. The queue is bounded (`QUEUE_CAP` rows): when it is full `offer()` refuses, and
  the caller writes its row synchronously instead (`enqueue()` waits for room).

What never goes through here: calls of a run (they carry an idempotency key and are
audited `started` before the upstream call, awaited, see `mcpgateway.idempotency`), and
the `started` row of a side-effecting tool (awaited before the upstream call too); only
the outcome of such a call, and the single row of a read-only call, are deferred.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings

log = logging.getLogger(__name__)

Flush = Callable[[list[dict[str, Any]]], Any]
StandIns = Callable[[str, dict[str, Any], BaseException], list[dict[str, Any]]]

QUEUE_CAP = 50_000  # rows waiting at most; beyond it callers write synchronously
RETRY_MIN_S = 0.05  # backoff between tries while the database fails, doubling ...
RETRY_MAX_S = 2.0  # ... up to this


def row_error(exc: BaseException) -> bool:
    """Whether `exc` is about the rows written, as opposed to the database failing (connection
    lost or in a bad state, locked, table missing): the former is isolated row by row, the
    latter retried.

    The database refusing values (a data or integrity error) and what the rows' own values
    raise before they reach it (a value too deeply nested to redact or store: `RecursionError`;
    `ValueError`, `TypeError`, `LookupError`, `UnicodeError`) are the rows'. Every other
    error — any of the database driver's (`django.db.Error`: `InterfaceError` is not a
    `DatabaseError`), a network one, anything unforeseen — is retried: a row is never written
    with a note, or lost, for a failure that is not its own. (Retried, a row-level failure
    would go back to the head of the queue for ever, with every later row behind it.)"""
    from django.db import DataError, IntegrityError

    return isinstance(exc, DataError | IntegrityError | RecursionError | ValueError | TypeError | LookupError)


def audit_stand_ins(kind: str, row: dict[str, Any], exc: BaseException) -> list[dict[str, Any]]:
    """What to write instead of an audit row the database refused on its own, in order: the
    row with its arguments and result replaced by a note, then also without its grant reference."""
    note = f"audit row refused by the database ({type(exc).__name__}: {str(exc)[:300]}); arguments and result not stored"
    if kind == "audit":
        noted = {**row, "arguments": {"audit_note": note}, "result": None}
        return [noted, {**noted, "arguments": {"audit_note": note, "grant_id": row.get("grant_id")}, "grant_id": None}]
    if kind == "audit_end":
        return [{**row, "result": {"audit_note": note}}]
    return []


class AuditBatchWriter:
    """Queue of (kind, row) committed by one thread every `flush_ms` or `max_rows` rows."""

    def __init__(self, flushers: dict[str, Flush], flush_ms: float, max_rows: int,
                 max_queued: int = QUEUE_CAP, stand_ins: StandIns = audit_stand_ins):
        self._flushers = flushers
        self._stand_ins = stand_ins
        self.flush_ms = flush_ms
        self.max_rows = max(1, max_rows)
        self.max_queued = max(self.max_rows, max_queued)
        self._queue: list[tuple[str, dict[str, Any]]] = []
        self._first_at = 0.0
        self._queued = 0  # rows ever queued
        self._done = 0  # rows ever resolved: committed (as they are or with a note) or lost
        self._lost = 0  # rows refused even with a note (logged as errors)
        self.failures = 0  # writes that failed and were retried or isolated (diagnostics)
        self._backoff = 0.0
        self._flush_wanted = False
        self._stopping = False
        self._cond = threading.Condition()
        self._drain_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def offer(self, kind: str, row: dict[str, Any]) -> bool:
        """Queue one row and return True at once, or False (nothing queued) when the queue is full."""
        return self._put(kind, row, wait=False)

    def enqueue(self, kind: str, row: dict[str, Any]) -> None:
        """Queue one row (from any thread); waits while the queue is full."""
        self._put(kind, row, wait=True)

    def _put(self, kind: str, row: dict[str, Any], wait: bool) -> bool:
        if kind not in self._flushers:
            raise KeyError(kind)
        with self._cond:
            while self._queued - self._done >= self.max_queued:  # queued and in flight: memory held
                if not wait:
                    return False
                self._ensure_thread()
                self._cond.wait(timeout=1.0)
            first = not self._queue
            if first:
                self._first_at = time.monotonic()
            self._queue.append((kind, row))
            self._queued += 1
            self._ensure_thread()
            if first or len(self._queue) >= self.max_rows:
                self._cond.notify_all()  # an idle thread starts this batch's window; a full one goes now
            return True

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="agentdeck-audit-batch", daemon=True)
            self._thread.start()

    def pending(self) -> int:
        with self._cond:
            return self._queued - self._done

    def lost(self) -> int:
        """Rows refused by the database even with a note (each logged as an error)."""
        with self._cond:
            return self._lost

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Block until every row queued before this call is committed. False when the timeout
        ends first (the rows stay queued and are still retried) or when a row was lost meanwhile."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target, lost_before = self._queued, self._lost
            if self._done < target:
                self._flush_wanted = True
                self._cond.notify_all()
            while self._done < target:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    log.error("audit flush timed out: %d rows not committed yet", self._queued - self._done)
                    return False
                if self._thread is None or not self._thread.is_alive():
                    # No thread to do it (interpreter shutting down): commit here.
                    self._cond.release()
                    try:
                        self._drain_once()
                    finally:
                        self._cond.acquire()
                    continue
                self._cond.wait(timeout=min(left, 1.0) if left is not None else 1.0)
            return self._lost == lost_before

    async def aflush(self, timeout: float = 30.0) -> bool:
        return await asyncio.to_thread(self.flush, timeout)

    def stop(self, timeout: float = 30.0) -> bool:
        """Flush, then let the thread end (a later `enqueue` starts a new one); the flush's result."""
        flushed = self.flush(timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        with self._cond:
            self._stopping = False
        return flushed

    # --- the writer thread ------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._queue:
                        due = self._first_at + self.flush_ms / 1000
                        now = time.monotonic()
                        if self._flush_wanted or self._stopping or len(self._queue) >= self.max_rows or now >= due:
                            break
                        self._cond.wait(timeout=due - now)
                    elif self._stopping:
                        self._thread = None
                        return
                    else:
                        if not self._cond.wait(timeout=60) and not self._queue:
                            self._thread = None
                            return
            self._drain_once()

    def _drain_once(self) -> None:
        with self._drain_lock:
            with self._cond:
                batch, self._queue = self._queue[: self.max_rows], self._queue[self.max_rows :]
                self._first_at = time.monotonic() if self._queue else 0.0
                if not self._queue:
                    self._flush_wanted = False
            if not batch:
                return
            committed, lost, rest = 0, 0, batch
            try:
                committed, lost, rest = self._write(batch)
            except BaseException:
                log.exception("audit batch writer failed; %d rows kept queued", len(rest))
                raise
            finally:
                with self._cond:
                    if rest:
                        self._queue[:0] = rest  # back to the head, order kept
                        self._first_at = 0.0  # due again after the backoff
                    self._done += committed + lost
                    self._lost += lost
                    self._cond.notify_all()
            if rest:
                self._backoff = min(RETRY_MAX_S, max(RETRY_MIN_S, self._backoff * 2))
                time.sleep(self._backoff)
            else:
                self._backoff = 0.0

    def _write(self, batch: list[tuple[str, dict[str, Any]]]) -> tuple[int, int, list[tuple[str, dict[str, Any]]]]:
        """Commit `batch`; (rows committed, rows lost, rows to retry later from the first not written)."""
        try:
            self._transaction(batch)
            return len(batch), 0, []
        except Exception as exc:
            self.failures += 1
            if not row_error(exc):
                log.warning("audit batch of %d rows not written (%s: %s); retrying", len(batch), type(exc).__name__, exc)
                return 0, 0, batch
            if len(batch) > 1:
                log.warning("audit batch of %d rows refused (%s: %s); writing row by row", len(batch), type(exc).__name__, exc)
        committed = lost = 0
        for index, (kind, row) in enumerate(batch):
            try:
                self._transaction([(kind, row)])
                committed += 1
                continue
            except Exception as exc:
                if not row_error(exc):
                    self.failures += 1
                    log.warning("audit rows not written (%s: %s); %d kept queued", type(exc).__name__, exc, len(batch) - index)
                    return committed, lost, batch[index:]
                refused = exc
            for stand_in in self._stand_ins(kind, row, refused):
                try:
                    self._transaction([(kind, stand_in)])
                except Exception as exc:
                    if not row_error(exc):
                        self.failures += 1
                        return committed, lost, batch[index:]
                    continue
                log.error("audit row of call %s (%s) refused by the database (%s: %s); written with a note instead",
                          _call_of(row), kind, type(refused).__name__, refused)
                committed += 1
                break
            else:
                log.error("audit row of call %s (%s) refused by the database even with a note (%s: %s); LOST",
                          _call_of(row), kind, type(refused).__name__, refused)
                lost += 1
        return committed, lost, []

    def _transaction(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        from django.db import connection, transaction

        from config.db_writer import release_connection

        try:
            if connection.errors_occurred:
                connection.close_if_unusable_or_obsolete()
            with transaction.atomic():
                for kind, rows in _runs_of_kind(items):
                    self._flushers[kind](rows)
        finally:
            try:
                if connection.errors_occurred:
                    connection.close_if_unusable_or_obsolete()
                release_connection()
            except Exception:
                log.warning("audit writer could not release its connection", exc_info=True)


def _call_of(row: dict[str, Any]) -> str:
    keys = ("team_id", "tool_name", "call_id", "dispatch_id", "created_at")
    return ", ".join(f"{k}={row[k]}" for k in keys if row.get(k) not in (None, ""))


def _runs_of_kind(batch: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Consecutive rows of one kind together, order kept (an outcome follows its insert)."""
    runs: list[tuple[str, list[dict[str, Any]]]] = []
    for kind, row in batch:
        if runs and runs[-1][0] == kind:
            runs[-1][1].append(row)
        else:
            runs.append((kind, [row]))
    return runs


_writer: AuditBatchWriter | None = None
_writer_lock = threading.Lock()


def audit_writer() -> AuditBatchWriter:
    """The process's writer (created on first use, flushed at interpreter exit)."""
    global _writer
    with _writer_lock:
        if _writer is None:
            from mcpgateway.dispatch import _finish_audit, _insert_audit

            _writer = AuditBatchWriter({"audit": _insert_audit, "audit_end": _finish_audit},
                                       flush_ms=settings.GATEWAY_AUDIT_FLUSH_MS,
                                       max_rows=settings.GATEWAY_AUDIT_BATCH_ROWS)
            atexit.register(_flush_at_exit)
        return _writer


def flush_audit(timeout: float | None = 30.0) -> bool:
    """Commit every deferred audit row queued so far (no-op when nothing was deferred)."""
    return True if _writer is None else _writer.flush(timeout)


def _flush_at_exit() -> None:
    if _writer is not None and _writer.pending():
        log.info("flushing %d audit rows before exit", _writer.pending())
        if not _writer.stop():
            log.error("audit rows not all committed before exit: %d still queued, %d lost",
                      _writer.pending(), _writer.lost())

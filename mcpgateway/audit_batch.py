"""Audit rows written in batches, off the request path (the /mcp fast path).

A call from an external MCP client does not wait for its audit row's commit: the row is
queued here and a writer thread commits queued rows together, `GATEWAY_AUDIT_FLUSH_MS`
after the first of them arrived or as soon as `GATEWAY_AUDIT_BATCH_ROWS` are waiting,
whichever comes first (durable commits, in queue order, one transaction per batch).

The window: a row is in the database at most about `GATEWAY_AUDIT_FLUSH_MS` (+ one
commit) after its call returned. `flush()` waits until everything queued before it is
committed; a normal stop (daphne's SIGTERM, interpreter exit, the endpoint's `aclose()`)
flushes; only a hard kill (SIGKILL, power loss) can lose the rows of that last window.

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

FLUSH_RETRIES = 3


class AuditBatchWriter:
    """Queue of (kind, row) committed by one thread every `flush_ms` or `max_rows` rows."""

    def __init__(self, flushers: dict[str, Flush], flush_ms: float, max_rows: int):
        self._flushers = flushers
        self.flush_ms = flush_ms
        self.max_rows = max(1, max_rows)
        self._queue: list[tuple[str, dict[str, Any]]] = []
        self._first_at = 0.0
        self._queued = 0  # rows ever queued
        self._done = 0  # rows ever committed (or given up on)
        self._flush_wanted = False
        self._stopping = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def enqueue(self, kind: str, row: dict[str, Any]) -> None:
        """Queue one row; returns at once (from any thread or event loop)."""
        if kind not in self._flushers:
            raise KeyError(kind)
        with self._cond:
            first = not self._queue
            if first:
                self._first_at = time.monotonic()
            self._queue.append((kind, row))
            self._queued += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="agentdeck-audit-batch", daemon=True)
                self._thread.start()
            if first or len(self._queue) >= self.max_rows:
                self._cond.notify_all()  # an idle thread starts this batch's window; a full one goes now

    def pending(self) -> int:
        with self._cond:
            return self._queued - self._done

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Block until every row queued before this call is committed; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._queued
            if self._done >= target:
                return True
            self._flush_wanted = True
            self._cond.notify_all()
            while self._done < target:
                if self._thread is None or not self._thread.is_alive():
                    # No thread to do it (interpreter shutting down): commit here.
                    self._cond.release()
                    try:
                        self._drain_once()
                    finally:
                        self._cond.acquire()
                    continue
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(timeout=left if left is not None else 1.0)
            return True

    async def aflush(self, timeout: float = 30.0) -> bool:
        return await asyncio.to_thread(self.flush, timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Flush, then let the thread end (a later `enqueue` starts a new one)."""
        self.flush(timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        with self._cond:
            self._stopping = False

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
        with self._cond:
            batch, self._queue = self._queue[: self.max_rows], self._queue[self.max_rows :]
            self._first_at = time.monotonic() if self._queue else 0.0
            if not self._queue:
                self._flush_wanted = False
        if not batch:
            return
        try:
            self._commit(batch)
        finally:
            with self._cond:
                self._done += len(batch)
                self._cond.notify_all()

    def _commit(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        from django.db import connection, transaction

        from config.db_writer import release_connection

        for attempt in range(1, FLUSH_RETRIES + 1):
            try:
                if connection.errors_occurred:
                    connection.close_if_unusable_or_obsolete()
                with transaction.atomic():
                    for kind, rows in _runs_of_kind(batch):
                        self._flushers[kind](rows)
                return
            except Exception:
                if attempt == FLUSH_RETRIES:
                    log.exception("audit batch of %d rows could not be written; dropped", len(batch))
                    return
                log.warning("audit batch write failed (attempt %d); retrying", attempt, exc_info=True)
                time.sleep(0.2 * attempt)
            finally:
                release_connection()


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
        _writer.stop()

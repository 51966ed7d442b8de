"""The clock leases are written and judged by: the database server's, on PostgreSQL.

Run leases (`Run.lease_until`) are written by one process and judged by others: with each
process's own clock, a live worker whose clock ran 25 s behind wrote leases that looked
expired to a correct clock, and another worker took its runs over while it still executed
them — both made the model call (found by a review); a clock running ahead kept a dead
worker's runs stranded for as long. On PostgreSQL every process reads the server's clock:
its offset from this process's clock, measured with a `clock_timestamp()` query at most every
`REFRESH_S` (the offset moves slowly; a query per lease would be one on every claim) and
applied to `timezone.now()`. SQLite is one host: one clock.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

from django.db import connection
from django.utils import timezone

REFRESH_S = 30.0
JUMP_S = 0.5  # this process's clock moved this far from what its monotonic clock says: measure again

_lock = threading.Lock()
_offset: timedelta = timedelta(0)
_measured_at: float | None = None  # monotonic
_local_at: datetime | None = None  # this process's clock then


def now() -> datetime:
    """Now, by the database server's clock (within the query's round trip). Measured again every
    `REFRESH_S`, and at once when this process's clock jumped (set by hand or by NTP, or moved
    by a test): an offset measured before the jump would be off by all of it."""
    if connection.vendor != "postgresql":
        return timezone.now()
    local, mono = timezone.now(), time.monotonic()
    if (_measured_at is None or _local_at is None or mono - _measured_at > REFRESH_S
            or abs(((local - _local_at) - timedelta(seconds=mono - _measured_at)).total_seconds()) > JUMP_S):
        _measure()
        local = timezone.now()
    return local + _offset


def _measure() -> None:
    # No lock around the query: a thread holding a pooled connection while it waited for the
    # lock, and the lock's holder waiting for a connection, exhausted the pool (the PostgreSQL
    # pass timed out on it). Two threads measuring at once only measure twice.
    global _offset, _measured_at, _local_at
    before = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        server = cursor.fetchone()[0]
    after = timezone.now()
    middle = before + (after - before) / 2
    with _lock:
        _offset = server - middle
        _local_at, _measured_at = middle, time.monotonic()


def forget() -> None:
    """Measure again at the next `now()` (tests that move the clock)."""
    global _measured_at
    _measured_at = None

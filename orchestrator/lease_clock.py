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

_lock = threading.Lock()
_offset: timedelta = timedelta(0)
_measured_at: float | None = None


def now() -> datetime:
    """Now, by the database server's clock (within the query's round trip)."""
    if connection.vendor != "postgresql":
        return timezone.now()
    if _measured_at is None or time.monotonic() - _measured_at > REFRESH_S:
        _measure()
    return timezone.now() + _offset


def _measure() -> None:
    global _offset, _measured_at
    with _lock:
        before = timezone.now()
        with connection.cursor() as cursor:
            cursor.execute("SELECT clock_timestamp()")
            server = cursor.fetchone()[0]
        after = timezone.now()
        _offset = server - (before + (after - before) / 2)
        _measured_at = time.monotonic()


def forget() -> None:
    """Measure again at the next `now()` (tests that move the clock)."""
    global _measured_at
    _measured_at = None

"""Django's PostgreSQL backend, with the check its connection pool runs on each connection
it hands out (`ENGINE = "config.postgresql"` when the pool is on; Django builds the pool with
psycopg_pool's own check or none, `CONN_HEALTH_CHECKS`, and takes no other).

A pooled connection the server dropped while it sat idle (a restart, a failover, an idle
timeout, `pg_terminate_backend`) was handed out as it was: the write on it failed, and a run's
step commit failing that way failed the run for good ("internal error: OperationalError:
terminating connection due to administrator command"; found by a review: 15 of 20 runs in
flight in a worker whose connections were dropped three times). psycopg_pool's own check
costs a round trip per checkout, on the hot path of every write. This one polls the socket
first: an idle connection's socket is readable only when the server sent something — its
termination notice, a restart's end of stream, a notification — and only then does it make
the round trip, which raises for a dead connection (the pool then discards it and hands out
another) and consumes a harmless message.
"""

from __future__ import annotations

import select
from typing import Any

import psycopg
from django.db.backends.postgresql import base
from psycopg_pool import ConnectionPool


def check_connection(conn: Any) -> None:
    if conn.closed or conn.broken:
        raise psycopg.OperationalError("the pooled connection is closed")
    # poll, not select: select refuses a file number past 1024, which a worker holding many
    # runs' sockets and pipes reaches (every healthy connection was then refused).
    poller = select.poll()
    try:
        poller.register(conn.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
        events = poller.poll(0)
    except (OSError, ValueError):
        events = [(None, select.POLLIN)]  # cannot tell: ask the server
    if events:
        ConnectionPool.check_connection(conn)


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self) -> Any:
        pool = super().pool
        if pool is not None and getattr(pool, "_check", None) is not check_connection:
            # (psycopg_pool keeps its check here; `test_dropped_connections.py` fails if it moves)
            pool._check = check_connection
        return pool

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

import contextlib
import select
import threading
import weakref
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


_held = threading.local()  # a thread's `_GiveBack`s, one per Django connection object it connected


class _GiveBack:
    """Kept in the thread-locals of the thread that took a pooled connection: if the thread
    ends still holding it, the connection goes back to its pool. A thread's locals are freed
    the moment it ends; its Django connection object is not (it sits in reference cycles).

    Without this, a thread that used the database and ended without closing its connection
    (`threading.Thread`, asgiref's `thread_sensitive=False` threads, a library's threads) took
    a pool slot for good: four such threads starved a process of `DB_POOL_MAX=4`, and every
    later write waited `DB_POOL_TIMEOUT_S` and failed (found by the PostgreSQL test pass).

    One per Django connection object, not per alias: a thread running an event loop (Playwright's
    sync API, `asyncio.run`) gets a connection object per async context, and a guard per alias
    handed the first one's connection back while it still used it (found by a review)."""

    __slots__ = ("__weakref__", "conn", "wrapper")

    def __init__(self, conn: Any, wrapper: Any):
        self.conn = conn
        self.wrapper = weakref.ref(wrapper)

    def __del__(self) -> None:
        conn, self.conn = self.conn, None
        pool = getattr(conn, "_pool", None)
        if pool is None:
            return
        wrapper = self.wrapper()
        if wrapper is not None and wrapper.connection is conn and wrapper.allow_thread_sharing:
            return  # another thread was given this connection object and may be using it
        with contextlib.suppress(Exception):  # (a closed pool, at interpreter exit)
            pool.putconn(conn)  # rolled back first if the thread left a transaction open


class _Guards(dict):
    __slots__ = ("__weakref__",)  # (referred to weakly: only the thread's locals keep it alive)


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params: Any) -> Any:
        conn = super().get_new_connection(conn_params)
        if getattr(conn, "_pool", None) is not None:
            guard = _GiveBack(conn, self)
            held = getattr(_held, "guards", None)
            if held is None:
                held = _held.guards = _Guards()
            held[id(self)] = guard
            self._give_back = (weakref.ref(guard), weakref.ref(held))
        return conn

    def _close(self) -> None:
        kept = getattr(self, "_give_back", None)
        self._give_back = None
        if kept is not None:
            guard, held = kept[0](), kept[1]()
            if guard is not None:
                guard.conn = None  # handed back (or closed) the usual way, from whichever thread
                if held is not None and held.get(id(self)) is guard:
                    held.pop(id(self), None)
        return super()._close()

    @property
    def pool(self) -> Any:
        pool = super().pool
        if pool is not None and getattr(pool, "_check", None) is not check_connection:
            # (psycopg_pool keeps its check here; `test_dropped_connections.py` fails if it moves)
            pool._check = check_connection
        return pool

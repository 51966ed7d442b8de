"""PostgreSQL drops the pool's connections under runs in flight (a restart, a failover, an idle
timeout, `pg_terminate_backend`), with nothing wrong with the runs.

The pool handed a dropped connection out as it was: the next write on it failed, and a run's
step commit failing that way failed the run for good (found by a review: 15 of 20 runs in a
worker whose connections were dropped). The pool now checks each connection it hands out
(`config/db_check.py`: a poll of its socket, a round trip only when the server said
something), so a dropped one is replaced. PostgreSQL only: SQLite has no server to drop them.
"""

from __future__ import annotations

import psycopg
import pytest
from asgiref.sync import async_to_sync
from django.db import connection

from config.db_writer import run_write
from mcpgateway.inprocess import InProcessToolbox
from orchestrator.models import RunEvent
from tests.conftest import execute, pipeline, scripted, start

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: the pool and its dropped connections")


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _drop_idle_pooled() -> int:
    """Terminate the backends of the pool's idle connections, as a server restart (or an idle
    timeout) does to them: only those, so the test's own connections and other threads' live on."""
    pids = [conn.info.backend_pid for conn in list(connection.pool._pool)]  # (psycopg_pool's idle connections)
    settings = connection.settings_dict
    dsn = f"postgresql://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/postgres"
    with psycopg.connect(dsn, autocommit=True) as admin:
        # With a timeout, each call returns once its backend has ended (and sent its notice):
        # without one it returns at once, and a connection checked out in the next milliseconds
        # was still silent — dropped mid-checkout, not while idle (the test failed now and then).
        rows = admin.execute("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE pid = ANY(%s)",
                             [pids]).fetchall()
    return len(rows)


def test_a_write_after_the_server_dropped_the_pooled_connection_succeeds():
    first = async_to_sync(run_write)(_backend_pid)
    assert _drop_idle_pooled() >= 1
    second = async_to_sync(run_write)(_backend_pid)  # it raised "terminating connection due to administrator command"
    assert second != first


def test_runs_go_on_when_the_server_drops_the_connections_mid_run(team):
    async def drop() -> str:
        from asgiref.sync import sync_to_async

        dropped = await sync_to_async(_drop_idle_pooled, thread_sensitive=False)()
        return f"dropped {dropped}"

    box = InProcessToolbox(grants={"w": ["t__drop"]})
    box.register("t__drop", drop, "Drop the database connections", {"type": "object", "properties": {}})
    scripted(team, "w", {"tool_calls": [{"name": "t__drop", "arguments": {}}]}, {"text": "done"})
    spec = {"steps": [{"kind": "agent", "id": f"s{i}", "agent": "w", "prompt": "go"} for i in range(3)]}
    run = execute(start(pipeline(team, spec)), box)
    assert run.status == "succeeded", (run.status, run.error)
    assert RunEvent.objects.filter(run=run, type="tool.finished").count() == 3


def test_the_pool_checks_connections_with_our_check():
    from config.postgresql.base import check_connection

    pool = connection.pool
    assert pool is not None and pool._check is check_connection  # (a psycopg_pool upgrade may move it)


def test_the_check_accepts_a_healthy_connection_past_file_number_1024():
    """`select.select` refuses a file number past 1024, which a worker holding many runs'
    sockets and pipes reaches: every healthy connection failed the check, and the pool handed
    out none (found by a review of this change). The check polls instead."""
    import os

    from config.postgresql.base import check_connection

    settings = connection.settings_dict
    hold = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]  # the next file number is past 1024
    try:
        with psycopg.connect(f"postgresql://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/postgres",
                             autocommit=True) as conn:
            assert conn.fileno() >= 1024
            check_connection(conn)
    finally:
        for fd in hold:
            os.close(fd)

# Found by an outside review (2026-12-07, dependency failures); failed before its fix.
"""A PostgreSQL connection lost while a run's step commit is in flight fails the run for good.

What is wrong: `orchestrator/engine/executor.py: Engine._agent` awaits `store.commit()` (the
step's / tool call's commit) with no retry, and `orchestrator/store.py: DjangoRunStore.commit`
re-raises the `OperationalError` after putting the writes back in its buffers. The exception
leaves the engine, `orchestrator/execution.py: execute_run` treats it as a crash and
`do_fail_run` ends the run `failed` ("internal error: OperationalError: ... terminating
connection due to administrator command"). The writes the store kept for a retry are dropped
with the run. So any run whose commit is on the wire when PostgreSQL restarts, fails over, or
a proxy/PgBouncer drops the connection, is lost; only the idle-connection case was fixed
(`test_dropped_connections.py`: the pool checks connections before handing them out).

Severity: high. A database restart fails every run that happens to be committing at that
moment, although the store already keeps the writes for a retry and the ambiguous-commit logic
(`_settle`) already makes a retry safe ("durable by step", "everything may fail, runs may not").

Correct: a commit that fails with a connection error (OperationalError / InterfaceError) is
retried with backoff on a fresh pooled connection (the writes are still buffered, the retry is
on the locked path that settles a lost answer) while the run's lease holds; the run succeeds,
its tool called exactly once.

The fault is real: another connection holds the run's row lock, so the step's commit waits on
it inside PostgreSQL; that waiting backend is then terminated with `pg_terminate_backend`,
exactly what a server restart does to it, and the lock is let go.

On SQLite the same holds for a write lock held past the busy timeout ("database is locked").
"""

from __future__ import annotations

import sqlite3
import threading
import time

import psycopg
import pytest
from django.conf import settings
from django.db import connection

from mcpgateway.inprocess import InProcessToolbox
from orchestrator.models import Run, RunEvent
from tests.conftest import execute, pipeline, scripted, start

pytestmark = pytest.mark.django_db(transaction=True)


def _dsn() -> str:
    s = connection.settings_dict
    return f"postgresql://{s['USER']}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


def _kill_the_commit_waiting_on(run_id: int, killed: list[int], done: threading.Event) -> None:
    """Lock the run's row, wait until a backend waits for that lock (the step's commit),
    terminate that backend, then let the lock go."""
    try:
        with psycopg.connect(_dsn()) as locker, psycopg.connect(_dsn(), autocommit=True) as admin:
            locker.execute("SELECT id FROM orchestrator_run WHERE id = %s FOR UPDATE", [run_id])
            mine = locker.info.backend_pid
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not killed:
                rows = admin.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' "
                    "AND %s = ANY(pg_blocking_pids(pid))", [mine]).fetchall()
                for (pid,) in rows:
                    admin.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])
                    killed.append(pid)
                time.sleep(0.02)
            locker.rollback()
    finally:
        done.set()


def test_a_step_commit_cut_off_by_a_database_restart_is_retried_not_a_failed_run(team):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: a server connection to lose")
    killed: list[int] = []
    done = threading.Event()
    calls: list[int] = []
    run_ids: list[int] = []

    async def act() -> str:
        calls.append(1)
        if len(calls) == 1:  # the call's commit (ledger row, events) comes next: cut it off
            threading.Thread(target=_kill_the_commit_waiting_on, args=(run_ids[0], killed, done), daemon=True).start()
            time.sleep(0.2)  # noqa: ASYNC251 - the locker holds the row before the commit is sent
        return "acted"

    box = InProcessToolbox(grants={"w": ["t__act"]})
    box.register("t__act", act, "Act once", {"type": "object", "properties": {}})
    scripted(team, "w", {"tool_calls": [{"name": "t__act", "arguments": {}}]}, {"text": "done"})
    spec = {"steps": [{"kind": "agent", "id": "s0", "agent": "w", "prompt": "go"},
                      {"kind": "agent", "id": "s1", "agent": "w", "prompt": "go"}]}
    run = start(pipeline(team, spec))
    run_ids.append(run.pk)
    crashed = None
    try:
        execute(run, box)
    except Exception as exc:  # today execute_run re-raises the crash
        crashed = exc
    done.wait(30)
    run = Run.objects.get(pk=run.pk)

    assert killed, "the fault was not injected: no commit waited on the run's row"
    assert crashed is None and run.status == "succeeded", (run.status, run.error, repr(crashed))
    assert len(calls) == 2  # one call per step, none made twice
    assert RunEvent.objects.filter(run=run, type="tool.finished").count() == 2


def _hold_the_write_lock(seconds: float, held: threading.Event) -> None:
    blocker = sqlite3.connect(str(settings.DATABASES["default"]["NAME"]), isolation_level=None, timeout=30)
    try:
        blocker.execute("BEGIN EXCLUSIVE")  # writers wait out their busy timeout, then "database is locked"
        held.set()
        time.sleep(seconds)
        blocker.execute("COMMIT")
    finally:
        blocker.close()


@pytest.mark.slow
def test_a_step_commit_that_meets_a_locked_database_is_retried_not_a_failed_run(team):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's write lock")
    calls: list[int] = []
    held = threading.Event()
    busy_timeout_s = 10  # the writer's `PRAGMA busy_timeout` (config/settings.py)

    async def act() -> str:
        calls.append(1)
        if len(calls) == 1:  # the call's commit comes next: it waits, fails once, is tried again
            threading.Thread(target=_hold_the_write_lock, args=(busy_timeout_s + 2, held), daemon=True).start()
            held.wait(5)
        return "acted"

    box = InProcessToolbox(grants={"w": ["t__act"]})
    box.register("t__act", act, "Act once", {"type": "object", "properties": {}})
    scripted(team, "w", {"tool_calls": [{"name": "t__act", "arguments": {}}]}, {"text": "done"})
    run = start(pipeline(team, {"steps": [{"kind": "agent", "id": "s0", "agent": "w", "prompt": "go"}]}))
    execute(run, box)
    run = Run.objects.get(pk=run.pk)

    assert held.is_set()
    assert run.status == "succeeded", run.error
    assert len(calls) == 1
    assert RunEvent.objects.filter(run=run, type="tool.finished").count() == 1

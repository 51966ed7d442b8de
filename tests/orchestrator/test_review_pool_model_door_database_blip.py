# Found by an outside review (2026-12-07, worker pool and failures); failed before its fix.
"""Outside review (pool / dependency failures): a PostgreSQL connection lost while the model
door settles a call's budget reservation fails the run, and the paid call is never recorded.

`orchestrator/model_door.py: ModelDoor.complete` writes to the database around every model
call under a team budget: `budgets.reserve` before, `budgets.settle` after (also
`_fresh_budgets` and `budgets.remaining`). None of these `run_write`s is retried: an
`OperationalError` (a server restart, a failover, a proxy dropping the connection) leaves the
door, the engine does not catch it (`Engine._agent` catches provider/step errors only), and
`execution.execute_run` fails the run as crashed ("internal error: OperationalError"). Only the
store's commit is retried (`DjangoRunStore.commit`, README "A commit that meets a database out
of reach is tried again, not a failed run").

For `settle` this is worse than a failed run: the provider already answered (the call is
paid), its usage is never recorded (no UsageRecord, the run's totals unchanged), and
`do_fail_run` gives the reservation back, so the team budget's counter ends *below* what was
spent: the call is free as far as every budget knows.

The fault is real: another connection holds the run's row lock while the call is in flight,
so `settle`'s first statement (`budgets._lock_runs`) waits on it inside PostgreSQL; that
waiting backend alone is terminated with `pg_terminate_backend`, as a server restart does.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from decimal import Decimal

import psycopg
import pytest
from django.db import connection

from orchestrator.models import BudgetCounter, BudgetReservation, Limit, Run, UsageRecord
from tests.conftest import execute, pipeline, scripted, start

pytestmark = pytest.mark.django_db(transaction=True)

# `budgets._lock_runs` (settle / release): the run ids, ordered, FOR UPDATE. reserve's lock
# reads lease_owner and the store's group lock reads the head columns: neither matches.
SETTLE_LOCK = 'SELECT "orchestrator_run"."id" AS "pk" FROM "orchestrator_run" WHERE "orchestrator_run"."id" IN (%) ORDER BY 1 ASC FOR UPDATE'


def _dsn() -> str:
    s = connection.settings_dict
    return f"postgresql://{s['USER']}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


def _kill_settle(run_id: int, killed: list[int], done: threading.Event) -> None:
    """Once the call's reservation is committed (the call is in flight), lock the run row; when
    `settle` waits for it, terminate that backend; let the lock go. (Waits for it directly or
    queued behind another writer of the row that waits for it too, such as a commit of the
    run's events during the call: then the row's other waiter is what blocks `settle`.)"""
    try:
        with psycopg.connect(_dsn(), autocommit=True) as admin:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if admin.execute("SELECT 1 FROM orchestrator_budgetreservation WHERE run_id = %s",
                                 [run_id]).fetchone():
                    break
                time.sleep(0.01)
            with psycopg.connect(_dsn()) as locker:
                locker.execute("SELECT id FROM orchestrator_run WHERE id = %s FOR UPDATE", [run_id])
                while time.monotonic() < deadline and not killed:
                    rows = admin.execute(
                        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' "
                        "AND cardinality(pg_blocking_pids(pid)) > 0 AND query LIKE %s", [SETTLE_LOCK]).fetchall()
                    for (pid,) in rows:
                        admin.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])
                        killed.append(pid)
                    time.sleep(0.01)
                locker.rollback()
    finally:
        done.set()


def test_a_connection_lost_while_a_paid_call_is_settled_neither_fails_the_run_nor_loses_its_usage(team):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: a server connection to lose")
    scripted(team, "w", {"text": "done", "delay_ms": 1500, "usage": {"input_tokens": 100, "output_tokens": 50}})
    Limit.objects.create(team=team, scope="team", kind="tokens_per_day", value=Decimal(100_000))
    run = start(pipeline(team, {"steps": [{"kind": "agent", "id": "s0", "agent": "w", "prompt": "go"}]}))
    killed: list[int] = []
    done = threading.Event()
    threading.Thread(target=_kill_settle, args=(run.pk, killed, done), daemon=True).start()
    crashed = None
    try:
        execute(run)
    except Exception as exc:  # today execute_run re-raises the crash
        crashed = exc
    done.wait(30)
    run = Run.objects.get(pk=run.pk)

    assert killed, "the fault was not injected: settle never waited on the run's row"
    # The provider answered before settle ran: the call was made and paid.
    usage = list(UsageRecord.objects.filter(run=run).values_list("input_tokens", "output_tokens"))
    counter = BudgetCounter.objects.get().used
    assert crashed is None and run.status == "succeeded", (run.status, run.error[:80], f"usage={usage} counter={counter}")
    assert usage == [(100, 50)], f"the paid call's usage was not recorded: {usage}"
    assert counter == 150, f"team budget counter {counter}, but 150 tokens were spent"
    assert not BudgetReservation.objects.filter(run=run).exists()


def _kill_reserve(counter_id: int, locked: threading.Event, killed: list[int], done: threading.Event) -> None:
    """Hold the budget counter's row; when `reserve`'s UPDATE of it waits (nothing else writes
    it before the call), terminate that backend; let the lock go."""
    try:
        with psycopg.connect(_dsn()) as locker, psycopg.connect(_dsn(), autocommit=True) as admin:
            locker.execute("SELECT id FROM orchestrator_budgetcounter WHERE id = %s FOR UPDATE", [counter_id])
            mine = locker.info.backend_pid
            locked.set()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not killed:
                rows = admin.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' "
                    "AND %s = ANY(pg_blocking_pids(pid))", [mine]).fetchall()
                for (pid,) in rows:
                    admin.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])
                    killed.append(pid)
                time.sleep(0.01)
            locker.rollback()
    finally:
        locked.set()
        done.set()


def test_a_connection_lost_while_a_call_reserves_its_budget_room_does_not_fail_the_run(team):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: a server connection to lose")
    scripted(team, "w", {"text": "done", "usage": {"input_tokens": 100, "output_tokens": 50}})
    Limit.objects.create(team=team, scope="team", kind="tokens_per_day", value=Decimal(100_000))
    run = start(pipeline(team, {"steps": [{"kind": "agent", "id": "s0", "agent": "w", "prompt": "go"}]}))
    limit = Limit.objects.get()
    counter = BudgetCounter.objects.create(limit=limit, window=datetime.now(UTC).toordinal(), used=0)
    killed: list[int] = []
    locked, done = threading.Event(), threading.Event()
    threading.Thread(target=_kill_reserve, args=(counter.pk, locked, killed, done), daemon=True).start()
    locked.wait(10)
    crashed = None
    try:
        execute(run)
    except Exception as exc:  # today execute_run re-raises the crash
        crashed = exc
    done.wait(30)
    run = Run.objects.get(pk=run.pk)

    assert killed, "the fault was not injected: reserve never waited on the run's row"
    assert crashed is None and run.status == "succeeded", (run.status, run.error[:100], repr(crashed)[:100])
    assert list(UsageRecord.objects.filter(run=run).values_list("input_tokens", "output_tokens")) == [(100, 50)]
    assert BudgetCounter.objects.get().used == 150


def _kill_budget_read(run_id: int, killed: list[int], done: threading.Event) -> None:
    """Once the run's first step runs (its claim has read the limits), hold the limits table;
    when the door's look for budgets (`_fresh_budgets`) waits for it, terminate that backend."""
    try:
        with psycopg.connect(_dsn(), autocommit=True) as admin:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if admin.execute("SELECT 1 FROM orchestrator_steprun WHERE run_id = %s AND key = 's0'",
                                 [run_id]).fetchone():
                    break
                time.sleep(0.005)
            with psycopg.connect(_dsn()) as locker:
                locker.execute("LOCK TABLE orchestrator_limit IN ACCESS EXCLUSIVE MODE")
                mine = locker.info.backend_pid
                while time.monotonic() < deadline and not killed:
                    rows = admin.execute(
                        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' "
                        "AND %s = ANY(pg_blocking_pids(pid))", [mine]).fetchall()
                    for (pid,) in rows:
                        admin.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])
                        killed.append(pid)
                    time.sleep(0.01)
                locker.rollback()
    finally:
        done.set()


def test_a_connection_lost_while_the_door_looks_for_budgets_does_not_fail_a_run_under_none(team):
    """No budget at all: the door still reads the team's budgets before a call (at most every
    `BUDGETS_FRESH_S`), and that read failing fails the run."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: a server connection to lose")
    scripted(team, "w", {"text": "done", "delay_ms": 1200})
    run = start(pipeline(team, {"steps": [{"kind": "agent", "id": "s0", "agent": "w", "prompt": "go"},
                                          {"kind": "agent", "id": "s1", "agent": "w", "prompt": "go"}]}))
    killed: list[int] = []
    done = threading.Event()
    threading.Thread(target=_kill_budget_read, args=(run.pk, killed, done), daemon=True).start()
    crashed = None
    try:
        execute(run)
    except Exception as exc:  # today execute_run re-raises the crash
        crashed = exc
    done.wait(30)
    run = Run.objects.get(pk=run.pk)

    assert killed, "the fault was not injected: the door never read the limits"
    assert crashed is None and run.status == "succeeded", (run.status, run.error[:100], repr(crashed)[:100])

# Found by an outside review (2026-12-07, the commit retry); failed before its fix.
"""A commit retried after a lost answer returns as if all were well although the run's lease was
taken by another worker meanwhile: the engine goes on running a run that is no longer its own.

What is wrong: `orchestrator/store.py: DjangoRunStore.commit` (ff05505) now retries `_commit_once`
by itself for up to 30 s (about a lease). When the first attempt was made but its answer was lost
(the connection dropped after the server committed), the retry goes the locked path, where
`DjangoRunStore._commit` -> `_settle` finds it made and, the attempt carrying nothing else,
returns `[], head.cancel_requested` *before* the lease check (`if self.lease_owner and
head.lease_owner != self.lease_owner: raise LeaseLost`). So a step's / tool call's commit whose
retry comes after another worker took the run over (the lease ran out while this worker could
not reach the database: its renewals failed too) returns normally, and the engine makes the
next model call (paid) and goes on, alongside the worker that now holds the run. Before the fix
the commit raised and the run stopped; the retry now makes this the normal outcome of a lost
answer on a step's commit, and the README promises the retry "would answer `LeaseLost`".

Severity: medium. The store's own promise (a commit of a run another worker holds raises
LeaseLost) is broken on the path the new retry makes routine; the engine then goes on until
something else notices the takeover (the lease keeper's next look, <= 0.5 s, and the flusher's
commit after it): a model call or tool call started in that window is made by two workers.
(In an end-to-end try on this machine the keeper's look stopped the engine before its next model
request; the window is a race, so the test pins the store's contract.)

Correct: the locked path checks the lease (the run row is locked there) also when it only settles
an earlier attempt as made, and raises LeaseLost when the row is held by another owner (the made
attempt's events are still published); only a run that the made attempt itself ended (lease
given back, status no longer running) may skip the check.

The fault is injected at the driver, as in tests/orchestrator/test_ambiguous_commit.py: the
query really runs on PostgreSQL and commits, then the client hears the connection drop; at that
moment another worker takes the run (its row now names another lease owner).
"""

from __future__ import annotations

import threading
from functools import partial

import psycopg
import pytest
from asgiref.sync import async_to_sync
from django.db import connection

from orchestrator.engine.errors import LeaseLost
from orchestrator.engine.store import LedgerWrite
from orchestrator.models import LedgerEntry, Run
from orchestrator.store import DjangoRunStore
from tests.conftest import pipeline, scripted, start

pytestmark = pytest.mark.django_db(transaction=True)


def _dsn() -> str:
    s = connection.settings_dict
    return f"postgresql://{s['USER']}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


def _answer_lost_then_taken_over(monkeypatch, run_id: int, starts: tuple[str, ...]) -> list[str]:
    """The first writer-thread query starting with `starts` (or ending with COMMIT), or the first
    driver COMMIT, is made; then another worker takes the run, then the client hears the drop."""
    original, commit = psycopg.Cursor.execute, psycopg.Connection.commit
    dropped: list[str] = []

    def take_over() -> None:
        with psycopg.connect(_dsn(), autocommit=True) as other:
            other.execute("UPDATE orchestrator_run SET lease_owner = 'other-worker:1', "
                          "lease_until = now() + interval '30 seconds' WHERE id = %s", [run_id])

    def execute(cursor, query, *args, **kwargs):
        result = original(cursor, query, *args, **kwargs)
        text = query.decode() if isinstance(query, bytes) else str(query)
        if (threading.current_thread().name.startswith("agentdeck-db-writer") and not dropped
                and (text.startswith(starts) or text.rstrip().endswith("COMMIT"))):
            dropped.append(text[:60])
            cursor.connection.close()
            take_over()
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return result

    def commit_then_drop(conn):
        commit(conn)
        if threading.current_thread().name.startswith("agentdeck-db-writer") and not dropped:
            dropped.append("COMMIT")
            conn.close()
            take_over()
            raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(psycopg.Cursor, "execute", execute)
    monkeypatch.setattr(psycopg.Connection, "commit", commit_then_drop)
    return dropped


async def _tool_call_recorded(store: DjangoRunStore) -> None:
    """What `agent_loop._call_tool` does once a tool has answered: its ledger row, its event, commit."""
    store.stage(LedgerWrite("s0", 1, 1, "tool", "t__act", {"call_id": "c1", "arguments": {}},
                            {"content": "acted", "is_error": False}))
    store.emit("tool.finished", {"call_id": "c1", "name": "t__act", "is_error": False, "content": "acted"}, "s0")
    await store.commit()


@pytest.mark.parametrize("path", ["one query", "group"])
def test_a_retried_commit_after_a_takeover_raises_lease_lost(team, monkeypatch, path):
    if connection.vendor != "postgresql":
        pytest.skip("the fault is injected in PostgreSQL's driver")
    scripted(team, "w", {"text": "ok"})
    run = start(pipeline(team, {"steps": [{"kind": "agent", "id": "s0", "agent": "w", "prompt": "go"}]}))
    Run.objects.filter(pk=run.pk).update(status="running", lease_owner="me:1")
    store = DjangoRunStore(run.pk, lease_owner="me:1", publish_events=False)
    async_to_sync(store.load)()
    store.emit("step.started", {"step_id": "s0", "kind": "agent"}, "s0")
    async_to_sync(store.commit)()  # the head is known: the next commit may go in one query
    if path == "group":
        store._head = None

    dropped = _answer_lost_then_taken_over(monkeypatch, run.pk, ("WITH moved AS",))
    outcome = "returned"
    try:
        async_to_sync(partial(_tool_call_recorded, store))()
    except LeaseLost:
        outcome = "LeaseLost"
    monkeypatch.undo()

    assert dropped, "the fault was not injected"
    assert LedgerEntry.objects.filter(run=run, kind="tool").count() == 1  # the first attempt was made, once
    assert Run.objects.get(pk=run.pk).lease_owner == "other-worker:1"
    assert outcome == "LeaseLost", (
        "the commit's retry settled the lost answer as made and returned normally, although the run "
        "is now held by another worker: the engine goes on (next model call) with a lease it lost")


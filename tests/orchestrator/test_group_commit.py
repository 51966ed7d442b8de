"""A step is one transaction; concurrent runs share transactions (group commit); a lease lost
in a shared transaction fails only its own run's commit; a failed group commit keeps its writes
and fails every caller whose writes it carried; other database work interleaves with a stream of
group commits; group commits and budget writers never deadlock."""

from __future__ import annotations

import asyncio
import threading
import time
from decimal import Decimal
from functools import partial

import pytest
from asgiref.sync import async_to_sync
from django.db import DatabaseError, IntegrityError, connection
from django.db.backends.signals import connection_created

from config.db_writer import close_writer_connections, group_commit_stats, group_write, run_write
from mcpgateway.inprocess import InProcessToolbox
from orchestrator import budgets
from orchestrator.engine.errors import LeaseLost
from orchestrator.engine.store import RunWrite, StepWrite, UsageWrite
from orchestrator.events import verify_chain
from orchestrator.execution import execute_run
from orchestrator.models import (
    BudgetCounter,
    BudgetReservation,
    Limit,
    Run,
    RunEvent,
    StepRun,
    UsageRecord,
)
from orchestrator.store import DjangoRunStore
from tests.conftest import pipeline, scripted, start

pytestmark = pytest.mark.django_db(transaction=True)


def _linear(steps: int) -> dict:
    return {"steps": [{"kind": "agent", "id": f"s{i}", "agent": "fast", "prompt": f"step {i}"} for i in range(steps)]}


class _WriterCommits:
    """COMMITs that SQLite itself executes on the engine's writer connections (a trace hook on
    each connection the writer threads open)."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def _traced(self, statement: str) -> None:
        if statement.strip().upper().startswith("COMMIT"):
            with self._lock:
                self.count += 1

    def __call__(self, sender, connection, **kwargs) -> None:
        if threading.current_thread().name.startswith("agentdeck-db-writer"):
            connection.connection.set_trace_callback(self._traced)


@pytest.fixture
def writer_commits():
    if connection.vendor != "sqlite":
        pytest.skip("counts COMMITs with SQLite's trace hook")
    close_writer_connections()  # the next write opens a new, traced connection
    counter = _WriterCommits()
    connection_created.connect(counter, weak=False)
    yield counter
    connection_created.disconnect(counter)
    close_writer_connections()


def test_it_commits_a_step_with_its_events_in_one_transaction(team, writer_commits):
    scripted(team, "fast", {"text": "ok"})
    run = start(pipeline(team, _linear(10)))

    # No timed event flushes: only the commits the steps make are counted.
    async_to_sync(execute_run)(run.pk, toolbox=InProcessToolbox(), flush_interval=30)

    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    # Ten steps, one commit each (the step row, its events, usage and the run's totals
    # together; the last one also ends the run), plus the claim (when a writer thread runs it).
    assert 10 <= writer_commits.count <= 10 + 1, writer_commits.count
    assert StepRun.objects.filter(run=run, status="succeeded").count() == 10
    assert verify_chain(RunEvent.objects.filter(run=run).order_by("seq")).ok


def test_it_carries_the_steps_of_concurrent_runs_in_fewer_transactions(team):
    scripted(team, "fast", {"text": "ok"})
    pipe = pipeline(team, _linear(5))
    runs = [start(pipe) for _ in range(8)]
    transactions, writes = group_commit_stats()

    async def all_at_once() -> list:
        return await asyncio.gather(*(execute_run(r.pk, toolbox=InProcessToolbox()) for r in runs))

    outcomes = async_to_sync(all_at_once)()

    assert [o.status for o in outcomes] == ["succeeded"] * 8
    transactions, writes = group_commit_stats()[0] - transactions, group_commit_stats()[1] - writes
    assert writes >= 8 * 5, writes  # every step committed
    assert transactions < writes, f"{writes} commits in {transactions} transactions"
    for run in runs:
        assert StepRun.objects.filter(run=run, status="succeeded").count() == 5
        assert verify_chain(RunEvent.objects.filter(run=run).order_by("seq")).ok


def test_it_fails_only_the_run_whose_lease_was_lost_in_a_shared_transaction(team):
    scripted(team, "fast", {"text": "ok"})
    pipe = pipeline(team, _linear(1))
    lost, held = start(pipe), start(pipe)
    Run.objects.filter(pk=lost.pk).update(status="running", lease_owner="someone-else")
    Run.objects.filter(pk=held.pk).update(status="running", lease_owner="me")

    async def scenario() -> tuple[list, int]:
        stores = [DjangoRunStore(r.pk, lease_owner="me", publish_events=False) for r in (lost, held)]
        for store in stores:
            await store.load()
            store.stage(StepWrite("s0", "s0", "agent", "succeeded", output="ok", started=True, finished=True))
            store.emit("step.succeeded", {"step_id": "s0", "output": "ok"}, "s0")
        before = group_commit_stats()[0]
        # Keep the group committer busy so both commits queue up behind it and share the next one.
        blocker = asyncio.ensure_future(group_write(0, time.sleep, 0.3))
        await asyncio.sleep(0.05)
        results = await asyncio.gather(*(s.commit() for s in stores), return_exceptions=True)
        await blocker
        return results, group_commit_stats()[0] - before

    (lost_result, held_result), transactions = async_to_sync(scenario)()

    assert isinstance(lost_result, LeaseLost)
    assert held_result is None
    assert transactions == 2, "the blocker, then both runs' commits in one transaction"
    assert not StepRun.objects.filter(run=lost).exists()
    assert not RunEvent.objects.filter(run=lost, type="step.succeeded").exists()
    assert StepRun.objects.get(run=held, key="s0").status == "succeeded"
    assert verify_chain(RunEvent.objects.filter(run=held).order_by("seq")).ok


def _dangling_step_row() -> None:
    """A write whose foreign key points nowhere: on SQLite the check is deferred, so the group's
    COMMIT fails. (A PostgreSQL group checks keys as each statement ends, so there the write
    fails alone; what fails a PostgreSQL group whole is a failed read, which aborts its
    transaction.)"""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 / %s", [0])
    StepRun.objects.create(run_id=2_000_000_000, key="ghost", step_id="ghost", kind="agent")


def test_it_keeps_the_writes_of_a_failed_group_commit_and_fails_every_caller_they_rode_with(team):
    scripted(team, "fast", {"text": "ok"})
    run = start(pipeline(team, _linear(2)))
    Run.objects.filter(pk=run.pk).update(status="running", lease_owner="me")

    async def scenario() -> tuple[list, tuple[list, list]]:
        store = DjangoRunStore(run.pk, lease_owner="me", publish_events=False)
        await store.load()
        blocker = asyncio.ensure_future(group_write(0, time.sleep, 0.3))
        await asyncio.sleep(0.05)
        # Queued behind the blocker, so it shares the next transaction with the run's commits.
        poison = asyncio.ensure_future(group_write(0, _dangling_step_row))
        # Two parallel branches commit; the first commit carries the second branch's writes too.
        for key in ("s0", "s1"):
            store.stage(StepWrite(key, key, "agent", "succeeded", output="ok", started=True, finished=True))
            store.emit("step.succeeded", {"step_id": key, "output": "ok"}, key)
        first = asyncio.ensure_future(store.commit())
        carried = asyncio.ensure_future(store.commit())
        results = await asyncio.gather(poison, first, carried, return_exceptions=True)
        await blocker
        kept = ([w.key for w in store._writes], [(t, k) for t, k, _ in store._events])
        await store.commit()  # the retry: a transaction without the dangling row
        return results, kept

    results, kept = async_to_sync(scenario)()

    assert all(isinstance(r, IntegrityError if connection.vendor == "sqlite" else DatabaseError) for r in results), results
    assert kept == (["s0", "s1"], [("step.succeeded", "s0"), ("step.succeeded", "s1")])
    assert sorted(StepRun.objects.filter(run=run).values_list("key", flat=True)) == ["s0", "s1"]
    assert not StepRun.objects.filter(key="ghost").exists()
    events = RunEvent.objects.filter(run=run).order_by("seq")
    assert [e.step_key for e in events if e.type == "step.succeeded"] == ["s0", "s1"]
    assert verify_chain(events).ok


def test_it_runs_other_database_work_between_the_groups_of_a_stream_of_commits(team):
    total = 60
    started: list[int] = []
    queued = [threading.Event() for _ in range(total)]  # queued[k]: write k + 1 waits in the queue

    def write(k: int) -> None:
        started.append(k)
        queued[k].wait(5)  # the stream never lets the queue run dry
        time.sleep(0.005)

    async def scenario() -> tuple[int, float]:
        loop = asyncio.get_running_loop()
        running = [asyncio.Event() for _ in range(total)]

        def traced(k: int) -> None:
            loop.call_soon_threadsafe(running[k].set)
            write(k)

        stream = [asyncio.ensure_future(group_write(0, traced, 0))]
        await running[0].wait()
        began = time.monotonic()
        other = asyncio.ensure_future(run_write(lambda: len(started)))
        for k in range(1, total):
            stream.append(asyncio.ensure_future(group_write(k, traced, k)))
            await asyncio.sleep(0)  # it is in the queue now
            queued[k - 1].set()
            await running[k].wait()
        queued[-1].set()
        await asyncio.gather(*stream)
        return await other, time.monotonic() - began

    seen, _ = async_to_sync(scenario)()

    # Run after the group in progress (one write each here), not after the whole stream.
    assert seen <= 5, f"the other work waited for {seen} of {total} group commits"


def test_it_does_not_deadlock_runs_ending_with_open_reservations_against_reservations(team):
    if connection.vendor != "postgresql":
        pytest.skip("row locks and deadlocks: PostgreSQL (SQLite has a single writer)")
    Limit.objects.create(team=team, scope="team", kind="tokens_per_day", value=Decimal(10**9))
    scripted(team, "fast", {"text": "ok"})
    pipe = pipeline(team, _linear(1))
    runs = [start(pipe) for _ in range(16)]
    Run.objects.filter(pk__in=[r.pk for r in runs]).update(status="running", lease_owner="me")
    team_budgets = budgets.budgets_for_run(team.pk, pipe.pk)

    async def branch(store: DjangoRunStore, reserve: partial, name: str, rounds: int) -> None:
        for i in range(rounds):
            key = f"{name}{i}"
            receipt = await run_write(budgets.settle, await run_write(reserve), 7, 0)
            store.stage(StepWrite(key, key, "agent", "succeeded", output="ok", started=True, finished=True))
            store.stage(UsageWrite(key, "fast", "scripted", "m", 3, 4, "0", receipt=receipt))
            store.emit("step.succeeded", {"step_id": key, "output": "ok"}, key)
            await store.commit()

    async def one_run(run: Run, rounds: int) -> None:
        # Two parallel branches reserve and commit; the run ends (staggered: others are still
        # reserving) with a call in flight, whose room its last commit gives back.
        store = DjangoRunStore(run.pk, lease_owner="me", publish_events=False)
        await store.load()
        reserve = partial(budgets.reserve, team_budgets, 10, 0, run_id=run.pk, lease_owner="me")
        await asyncio.gather(branch(store, reserve, "a", rounds), branch(store, reserve, "b", rounds))
        await run_write(reserve)
        store.stage(RunWrite("succeeded", output="ok"))
        store.emit("run.succeeded", {})
        await store.commit(final=True)

    async def all_at_once() -> list:
        return await asyncio.gather(*(one_run(r, 1 + i % 6) for i, r in enumerate(runs)), return_exceptions=True)

    outcomes = async_to_sync(all_at_once)()

    assert outcomes == [None] * len(runs), outcomes
    assert set(Run.objects.filter(pk__in=[r.pk for r in runs]).values_list("status", flat=True)) == {"succeeded"}
    assert not BudgetReservation.objects.exists()
    assert BudgetCounter.objects.get().used == 2 * 7 * sum(1 + i % 6 for i in range(len(runs))) == sum(
        u.input_tokens + u.output_tokens for u in UsageRecord.objects.all())


def test_a_group_reads_its_runs_heads_with_their_lock(team):
    """On PostgreSQL the statement that locks a group's runs also reads their heads, so a run's
    commit in the group costs no head query of its own; the head it gets is the row's, and a
    second commit of the same run in that group reads the row again (what the first wrote)."""
    from django.db import transaction
    from django.test.utils import CaptureQueriesContext

    from orchestrator import store as run_store

    scripted(team, "w", {"text": "ok"})
    runs = [start(pipeline(team, {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "go"}]}, name=f"p{i}"))
            for i in range(2)]
    Run.objects.filter(pk=runs[1].pk).update(last_seq=7, last_hash="f" * 64, lease_owner="me:1", cancel_requested=True)
    stores = [DjangoRunStore(run.pk) for run in runs]

    with transaction.atomic():
        run_store._lock_runs([run.pk for run in runs])
        with CaptureQueriesContext(connection) as first:
            heads = [store._run_head() for store in stores]
        with CaptureQueriesContext(connection) as again:
            head_again = stores[1]._run_head()

    assert (heads[1].last_seq, heads[1].last_hash, heads[1].lease_owner, heads[1].cancel_requested) == (
        7, "f" * 64, "me:1", True)
    assert heads[0].team_id == team.pk and heads[0].cost_usd == Decimal(0) and heads[0].cancel_requested is False
    assert head_again == heads[1] and len(again) == 1
    assert len(first) == (0 if connection.vendor == "postgresql" else 2)

    # Heads a lock read in an earlier transaction that no commit took (its group failed first)
    # are never used by a later one: a lone commit locks nothing, and reads its row itself.
    with transaction.atomic():
        run_store._lock_runs([run.pk for run in runs])
    Run.objects.filter(pk=runs[0].pk).update(last_seq=9, lease_owner="someone-else")
    with transaction.atomic(), CaptureQueriesContext(connection) as later:
        head = stores[0]._run_head()
    assert (head.last_seq, head.lease_owner, len(later)) == (9, "someone-else", 1)


@pytest.fixture
def driver_queries(monkeypatch):
    """The queries the writer threads' psycopg cursors send to PostgreSQL, in order (what
    reaches the server, past every Django execute wrapper). COMMIT is not a query here."""
    if connection.vendor != "postgresql":
        pytest.skip("group writes sent together: PostgreSQL (SQLite writes one by one)")
    import psycopg

    sent: list[str] = []
    original = psycopg.Cursor.execute

    def execute(cursor, query, *args, **kwargs):
        if threading.current_thread().name.startswith("agentdeck-db-writer"):
            sent.append(query.decode() if isinstance(query, bytes) else str(query))
        return original(cursor, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", execute)
    return sent


def _in_one_group(*writes) -> list:
    """Run `group_write` calls in one group: they queue behind a write that holds the writer."""
    async def scenario() -> list:
        blocker = asyncio.ensure_future(group_write(0, time.sleep, 0.3))
        await asyncio.sleep(0.05)
        results = await asyncio.gather(*(group_write(*w) for w in writes), return_exceptions=True)
        await blocker
        return results

    return async_to_sync(scenario)()


def test_a_groups_writes_reach_the_server_in_one_query_and_a_write_it_refused_fails_alone(team, driver_queries):
    """On PostgreSQL each write of a group keeps its own savepoint, but writes made of one
    `one_round_trip` query are held and go to the server together, each between its
    `SAVEPOINT` and `RELEASE`, with the group's COMMIT: three writes, one query. If the server
    refuses that query (before its COMMIT), it is
    undone and the writes are sent one by one: the refused one is rolled back to its savepoint
    and fails alone (its `on_commit` callbacks dropped), one that raised before sending anything
    leaves nothing, the others commit."""
    from django.db import DataError, transaction

    from config.sql_rows import one_round_trip, update_row

    scripted(team, "fast", {"text": "ok"})
    runs = [start(pipeline(team, _linear(1), name=f"p{i}")) for i in range(4)]
    ids = [r.pk for r in runs]
    Run.objects.filter(pk__in=ids).update(status="running")
    committed: list[int] = []

    def write(run_id: int, note: str) -> str:
        if note == "raise":
            raise ValueError("refused before writing")
        transaction.on_commit(partial(committed.append, run_id))
        with one_round_trip():
            update_row(Run, {"error": note}, {"id": run_id})
            update_row(Run, {"output": {"note": note}}, {"id": run_id})
        return note

    def refused(run_id: int) -> None:  # the second statement is longer than its column: only the server checks
        transaction.on_commit(partial(committed.append, run_id))
        with one_round_trip():
            update_row(Run, {"error": "partial"}, {"id": run_id})
            update_row(Run, {"status": "s" * 500}, {"id": run_id})

    def rows() -> list:
        found = {pk: (error, status, output) for pk, error, status, output in
                 Run.objects.filter(pk__in=ids).values_list("pk", "error", "status", "output")}
        return [found[pk] for pk in ids]

    before = group_commit_stats()[0]
    results = _in_one_group(*[(pk, write, pk, note) for pk, note in zip(ids, ["a", "b", "raise", "d"], strict=True)])
    assert results[:2] == ["a", "b"] and isinstance(results[2], ValueError) and results[3] == "d", results
    assert group_commit_stats()[0] - before == 2, "the blocker, then the four writes in one transaction"
    assert len(driver_queries) == 1, driver_queries  # three writes' six UPDATEs, each write in its savepoint
    query = driver_queries[0]
    assert query.count("UPDATE") == 6 and query.count("\nSAVEPOINT agentdeck_group_") == 3, query
    assert query.count("RELEASE SAVEPOINT agentdeck_group_") == 3 and "agentdeck_group_3" not in query, query
    assert query.endswith(";\nCOMMIT"), "the group's COMMIT goes with them: no round trip of its own"
    assert rows() == [("a", "running", {"note": "a"}), ("b", "running", {"note": "b"}), ("", "running", None),
                      ("d", "running", {"note": "d"})]
    assert sorted(committed) == sorted([ids[0], ids[1], ids[3]])

    Run.objects.filter(pk__in=ids).update(error="", output=None)
    driver_queries.clear()
    committed.clear()
    results = _in_one_group((ids[0], write, ids[0], "kept-0"), (ids[1], refused, ids[1]),
                            (ids[2], write, ids[2], "raise"), (ids[3], write, ids[3], "kept-3"))

    assert results[0] == "kept-0" and results[3] == "kept-3", results
    assert isinstance(results[1], DataError), results
    assert isinstance(results[2], ValueError), results
    assert rows() == [("kept-0", "running", {"note": "kept-0"}), ("", "running", None),
                      ("", "running", None), ("kept-3", "running", {"note": "kept-3"})]
    assert committed == [ids[0], ids[3]], "the refused write's on_commit callback is dropped"
    # The one query, refused; undone to its head; then each write alone, the refused one rolled back.
    assert [q.split(";")[0] for q in driver_queries] == [
        "SET CONSTRAINTS ALL IMMEDIATE", "ROLLBACK TO SAVEPOINT agentdeck_flush_1",
        "SAVEPOINT agentdeck_group_1",
        "SAVEPOINT agentdeck_group_2", "ROLLBACK TO SAVEPOINT agentdeck_group_2", "RELEASE SAVEPOINT agentdeck_group_2",
        "SAVEPOINT agentdeck_group_4"], driver_queries
    assert driver_queries[2].endswith("RELEASE SAVEPOINT agentdeck_group_1"), driver_queries


def test_a_write_that_goes_on_after_its_query_keeps_its_savepoint_around_what_follows(team, driver_queries):
    """A write whose held query is followed by more statements of its own sends the held
    writes then (its own savepoint left open), and a failure after that rolls back all of it —
    and only it: the writes held before it, sent in the same query, commit."""
    from config.sql_rows import one_round_trip, update_row

    scripted(team, "fast", {"text": "ok"})
    runs = [start(pipeline(team, _linear(1), name=f"p{i}")) for i in range(3)]
    ids = [r.pk for r in runs]

    def write(run_id: int, note: str) -> str:
        with one_round_trip():
            update_row(Run, {"error": note}, {"id": run_id})
        if note == "then fails":
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")  # a read: the held writes go first, its savepoint stays open
            update_row(Run, {"output": {"then": "written"}}, {"id": run_id})
            raise LeaseLost("gone after writing")
        return note

    results = _in_one_group((ids[0], write, ids[0], "first"), (ids[1], write, ids[1], "then fails"),
                            (ids[2], write, ids[2], "last"))
    assert results[0] == "first" and isinstance(results[1], LeaseLost) and results[2] == "last", results
    assert [Run.objects.get(pk=pk).error for pk in ids] == ["first", "", "last"]
    assert Run.objects.get(pk=ids[1]).output is None
    heads = [q.split(";")[0] for q in driver_queries]
    assert heads[:2] == ["SET CONSTRAINTS ALL IMMEDIATE", "SELECT 1"], driver_queries
    assert driver_queries[0].startswith("SET CONSTRAINTS ALL IMMEDIATE;\nSAVEPOINT agentdeck_flush_1;"), driver_queries
    assert "RELEASE SAVEPOINT agentdeck_group_2" not in driver_queries[0], "left open: the write goes on"
    assert "ROLLBACK TO SAVEPOINT agentdeck_group_2" in heads, driver_queries


def test_held_writes_sent_in_the_middle_of_a_group_fail_alone_when_refused(team, driver_queries):
    """The held writes go out in front of a later write's statement (here a read through a
    server-side cursor, on a client cursor of their own; one write holds two queries): a refused one among them fails
    alone, the write whose statement sent them goes on, and a write in progress whose own held
    query is refused fails even if it catches the error."""
    from django.db import DatabaseError, DataError

    from config.sql_rows import one_round_trip, update_row

    scripted(team, "fast", {"text": "ok"})
    runs = [start(pipeline(team, _linear(1), name=f"p{i}")) for i in range(4)]
    ids = [r.pk for r in runs]

    def twice(run_id: int) -> str:  # two one-query writes of its own, held together
        with one_round_trip():
            update_row(Run, {"error": "one"}, {"id": run_id})
        with one_round_trip():
            update_row(Run, {"output": {"two": True}}, {"id": run_id})
        return "twice"

    def refused(run_id: int) -> None:
        with one_round_trip():
            update_row(Run, {"status": "s" * 500}, {"id": run_id})

    def reads_then_writes(run_id: int) -> int:
        seen = list(Run.objects.filter(pk__in=ids).values_list("pk", flat=True).iterator(chunk_size=2))
        with one_round_trip():
            update_row(Run, {"error": f"saw {len(seen)}"}, {"id": run_id})
        return len(seen)

    def catches_its_own_refusal(run_id: int) -> str:
        with one_round_trip():
            update_row(Run, {"status": "s" * 500}, {"id": run_id})
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")  # sends its held query, which the server refuses
        except DatabaseError:
            pass
        update_row(Run, {"error": "went on"}, {"id": run_id})
        return "went on"

    results = _in_one_group((ids[0], twice, ids[0]), (ids[1], refused, ids[1]),
                            (ids[2], reads_then_writes, ids[2]), (ids[3], catches_its_own_refusal, ids[3]))
    assert results[0] == "twice" and isinstance(results[1], DataError) and results[2] == 4, results
    assert isinstance(results[3], DataError), (results, "\n---\n".join(q[:300] for q in driver_queries))
    rows = dict(Run.objects.filter(pk__in=ids).values_list("pk", "error"))
    assert [rows[pk] for pk in ids] == ["one", "", "saw 4", ""]
    assert Run.objects.get(pk=ids[0]).output == {"two": True}


def test_a_groups_reads_go_without_savepoints_and_a_failed_read_fails_the_group(team, driver_queries):
    """Reads in a PostgreSQL group go out alone (the held savepoint waits for the write's first
    write; the writes held before it go first, outside it). A read that fails has aborted the
    group's transaction, which no savepoint restores: the whole group fails, and nothing of it
    is written."""
    from django.db import DatabaseError

    from config.sql_rows import one_round_trip, select_rows, update_row

    scripted(team, "fast", {"text": "ok"})
    runs = [start(pipeline(team, _linear(1), name=f"p{i}")) for i in range(3)]
    sent = driver_queries

    def read_then_write(run_id: int, note: str) -> str:
        status = select_rows(Run, ("status",), {"id": run_id})[0][0]
        with one_round_trip():
            update_row(Run, {"error": f"{note}:{status}"}, {"id": run_id})
        return note

    def failing_read(run_id: int) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 / %s", [0])

    async def group(*writes) -> list:
        blocker = asyncio.ensure_future(group_write(0, time.sleep, 0.3))
        await asyncio.sleep(0.05)
        results = await asyncio.gather(*writes, return_exceptions=True)
        await blocker
        return results

    ok = async_to_sync(group)(group_write(runs[0].pk, read_then_write, runs[0].pk, "a"),
                              group_write(runs[1].pk, read_then_write, runs[1].pk, "b"))
    assert ok == ["a", "b"]
    assert [Run.objects.get(pk=r.pk).error for r in runs[:2]] == ["a:queued", "b:queued"]
    assert [q.split()[0] for q in sent] == ["SELECT", "SET", "SELECT", "SAVEPOINT"], sent
    assert sent[1].startswith("SET CONSTRAINTS ALL IMMEDIATE;\nSAVEPOINT "), sent  # once, with the group's first write
    assert all("UPDATE" in q and "\nSAVEPOINT agentdeck_group_" in q and "\nRELEASE SAVEPOINT agentdeck_group_" in q
               for q in sent[1::2]), sent

    def raises_first(run_id: int) -> None:  # sends nothing at all
        raise LeaseLost("held by someone else")

    def swallows(run_id: int) -> str:  # a write that catches its failed read and goes on
        try:
            failing_read(run_id)
        except DatabaseError:
            pass
        return "went on"

    # A failed read, then a write that sends nothing: the group stays lost and fails whole.
    failed = async_to_sync(group)(group_write(runs[0].pk, read_then_write, runs[0].pk, "c"),
                                  group_write(runs[1].pk, failing_read, runs[1].pk),
                                  group_write(runs[2].pk, raises_first, runs[2].pk))
    assert all(isinstance(r, DatabaseError) for r in failed), failed
    # A write that swallowed its failed read is not a success: its group fails, the last one too.
    swallowed = async_to_sync(group)(group_write(runs[0].pk, read_then_write, runs[0].pk, "d"),
                                     group_write(runs[2].pk, swallows, runs[2].pk))
    assert all(isinstance(r, DatabaseError) for r in swallowed), swallowed
    assert [Run.objects.get(pk=r.pk).error for r in runs] == ["a:queued", "b:queued", ""]


def test_a_write_pointing_at_a_row_deleted_meanwhile_fails_alone_in_its_group(team):
    """An agent deleted while its run is mid-step: that run's usage row points at nothing. Its
    commit fails; a run whose commit shared the group commits (it used to fail with it, at the
    group's COMMIT, and crash: a review found it). On PostgreSQL the group checks keys as each
    statement ends (`SET CONSTRAINTS ALL IMMEDIATE`, in front of its first write)."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite checks these keys at the COMMIT only (no savepoint can hold the failure)")
    from orchestrator.models import Agent

    doomed = scripted(team, "doomed", {"text": "ok"})
    scripted(team, "fine", {"text": "ok"})
    a = start(pipeline(team, {"steps": [{"kind": "agent", "id": "s0", "agent": "doomed", "prompt": "go"}]}, name="a"))
    b = start(pipeline(team, {"steps": [{"kind": "agent", "id": "s0", "agent": "fine", "prompt": "go"}]}, name="b"))
    Run.objects.filter(pk__in=[a.pk, b.pk]).update(status="running", lease_owner="me")

    async def scenario() -> list:
        first = DjangoRunStore(a.pk, lease_owner="me", publish_events=False)
        second = DjangoRunStore(b.pk, lease_owner="me", publish_events=False)
        await first.load()
        await second.load()
        await run_write(lambda: Agent.objects.filter(pk=doomed.pk).delete())
        first.stage(StepWrite("s0", "s0", "agent", "succeeded", output={"t": 1}, started=True, finished=True))
        first.stage(UsageWrite("s0", "doomed", "scripted", "scripted-1", 3, 1, "0.25"))
        second.stage(StepWrite("s0", "s0", "agent", "succeeded", output={"t": 1}, started=True, finished=True))
        second.emit("step.succeeded", {"step_id": "s0"}, "s0")
        blocker = asyncio.ensure_future(group_write(0, time.sleep, 0.3))  # the two commits queue into one group
        await asyncio.sleep(0.05)
        before = group_commit_stats()[0]
        results = await asyncio.gather(first.commit(), second.commit(), return_exceptions=True)
        await blocker
        return [*results, group_commit_stats()[0] - before]

    failed, committed, transactions = async_to_sync(scenario)()

    assert isinstance(failed, IntegrityError) and committed is None, (failed, committed)
    assert transactions == 2, "the blocker's, then one for the two commits"
    assert StepRun.objects.filter(run=b, key="s0", status="succeeded").exists()
    assert not StepRun.objects.filter(run=a).exists()
    assert verify_chain(RunEvent.objects.filter(run=b).order_by("seq")).ok

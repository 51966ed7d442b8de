"""A step is one transaction; concurrent runs share transactions (group commit); a lease lost
in a shared transaction fails only its own run's commit."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.db.backends.signals import connection_created

from config.db_writer import close_writer_connections, group_commit_stats, group_write
from mcpgateway.inprocess import InProcessToolbox
from orchestrator.engine.errors import LeaseLost
from orchestrator.engine.store import StepWrite
from orchestrator.events import verify_chain
from orchestrator.execution import execute_run
from orchestrator.models import Run, RunEvent, StepRun
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

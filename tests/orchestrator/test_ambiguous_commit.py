"""A commit whose answer is lost (the connection drops after the server ran it) is not made twice
by the retry: the run's head, read under its lock, shows it was made, and the writes and events
it carried are taken off the retry. It used to be put back and made again: usage counted twice,
events appended twice, a step row inserted twice (a review found it). The fault is injected at
the driver: the query really runs on the real database, then the client sees the connection fail."""

from __future__ import annotations

import threading
from functools import partial

import psycopg
import pytest
from asgiref.sync import async_to_sync
from django.db import OperationalError, connection

from orchestrator.engine.store import StepWrite, UsageWrite
from orchestrator.events import verify_chain
from orchestrator.models import Run, RunEvent, StepRun, UsageRecord
from orchestrator.store import DjangoRunStore
from tests.conftest import pipeline, scripted, start

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _one_attempt_per_commit(monkeypatch):
    """These tests drive the store's attempts one at a time (a lost answer, then its retry):
    `commit` does not try again by itself here (`test_commit_retried.py` covers that)."""
    monkeypatch.setattr("orchestrator.store.COMMIT_RETRY_S", 0.0)


@pytest.fixture
def run(team) -> Run:
    if connection.vendor != "postgresql":
        pytest.skip("the fault is injected in PostgreSQL's driver (SQLite has no connection to lose)")
    scripted(team, "fast", {"text": "ok"})
    run = start(pipeline(team, {"steps": [{"kind": "agent", "id": "s0", "agent": "fast", "prompt": "go"},
                                          {"kind": "agent", "id": "s1", "agent": "fast", "prompt": "go"}]}))
    Run.objects.filter(pk=run.pk).update(status="running", lease_owner="me")
    return run


def _dropping_after(monkeypatch, starts: tuple[str, ...]) -> list[str]:
    """The first writer-thread query that starts with one of `starts` (or ends with COMMIT), or
    the first COMMIT, runs, then the client is told the connection dropped."""
    original = psycopg.Cursor.execute
    dropped: list[str] = []

    def execute(cursor, query, *args, **kwargs):
        result = original(cursor, query, *args, **kwargs)
        text = query.decode() if isinstance(query, bytes) else str(query)
        if (threading.current_thread().name.startswith("agentdeck-db-writer") and not dropped
                and (text.startswith(starts) or text.rstrip().endswith("COMMIT"))):
            dropped.append(text[:60])
            cursor.connection.close()  # the server has committed; the client never hears
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return result

    commit = psycopg.Connection.commit

    def commit_then_drop(conn):  # a transaction of its own (a group of one) commits through the driver
        commit(conn)
        if threading.current_thread().name.startswith("agentdeck-db-writer") and not dropped:
            dropped.append("COMMIT")
            conn.close()
            raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(psycopg.Cursor, "execute", execute)
    monkeypatch.setattr(psycopg.Connection, "commit", commit_then_drop)
    return dropped


async def _step(store: DjangoRunStore, key: str, usage: bool, finished: bool = False) -> None:
    store.stage(StepWrite(key, key, "agent", "succeeded" if finished else "running", started=True, finished=finished,
                          output="ok" if finished else None))
    if usage:
        store.stage(UsageWrite(key, "fast", "scripted", "scripted-1", 100, 10, "0.50"))
    store.emit("llm.finished", {"turn": 1}, key)
    await store.commit()


@pytest.mark.parametrize("path", ["one query", "group"])
def test_a_commit_made_but_not_acknowledged_is_not_made_again_by_its_retry(run, monkeypatch, path):
    store = DjangoRunStore(run.pk, lease_owner="me", publish_events=False)
    async_to_sync(store.load)()
    async_to_sync(partial(_step, store, "s0", False))()  # the head is known: the next commit may go in one query
    if path == "group":
        store._head = None  # (as after any failure: the next commit takes the locked path)
    events_before = RunEvent.objects.filter(run=run).count()
    published: list[dict] = []
    store.listeners.append(published.append)

    dropped = _dropping_after(monkeypatch, ("WITH moved AS",))
    with pytest.raises(OperationalError):
        async_to_sync(partial(_step, store, "s1", True))()  # a new step row, usage, an event
    monkeypatch.undo()
    assert dropped and ("WITH moved" in dropped[0]) == (path == "one query"), dropped
    assert UsageRecord.objects.filter(run=run).count() == 1  # it was made
    assert store._writes and store._events, "kept for a retry: the store cannot know"

    store.stage(StepWrite("s1", "s1", "agent", "succeeded", finished=True, output="ok"))  # the step goes on
    store.emit("step.succeeded", {"output": "ok"}, "s1")
    async_to_sync(store.commit)()  # the flusher's retry

    run.refresh_from_db()
    events = list(RunEvent.objects.filter(run=run).order_by("seq"))
    assert UsageRecord.objects.filter(run=run).count() == 1 and run.input_tokens == 100, "usage counted twice"
    assert [e.type for e in events[events_before:]] == ["llm.finished", "step.succeeded"], "events made twice"
    assert verify_chain(events).ok
    assert StepRun.objects.get(run=run, key="s1").status == "succeeded"  # an update, not a second insert
    assert [p["type"] for p in published] == ["llm.finished", "step.succeeded"]  # the lost answer's events too
    assert not store._writes and not store._events


def test_a_commit_that_really_failed_is_made_by_its_retry(run, monkeypatch):
    """The check does not mistake a failed commit for a made one: the head did not move."""
    store = DjangoRunStore(run.pk, lease_owner="me", publish_events=False)
    async_to_sync(store.load)()
    original = psycopg.Cursor.execute

    def refuse(cursor, query, *args, **kwargs):
        if threading.current_thread().name.startswith("agentdeck-db-writer"):
            cursor.connection.close()
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return original(cursor, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", refuse)
    with pytest.raises(OperationalError):
        async_to_sync(partial(_step, store, "s0", True))()
    monkeypatch.undo()
    assert not UsageRecord.objects.filter(run=run).exists()

    async_to_sync(store.commit)()

    run.refresh_from_db()
    assert UsageRecord.objects.filter(run=run).count() == 1 and run.input_tokens == 100
    assert StepRun.objects.filter(run=run, key="s0").exists()
    assert verify_chain(RunEvent.objects.filter(run=run).order_by("seq")).ok


# --- on either database: answers lost above the driver (a review's cases) ----------------------

@pytest.fixture
def any_run(team) -> Run:
    scripted(team, "fast", {"text": "ok"})
    run = start(pipeline(team, {"steps": [{"kind": "agent", "id": "s0", "agent": "fast", "prompt": "go"},
                                          {"kind": "agent", "id": "s1", "agent": "fast", "prompt": "go"}]}))
    Run.objects.filter(pk=run.pk).update(status="running", lease_owner="me")
    return run


def _answers(monkeypatch, plan: list[str]) -> list[str]:
    """plan[i] for the store's i-th group commit: "ok"; "lost" (made, then the caller hears the
    connection dropped); "fails after settling" (the attempt settles the earlier doubt, then its
    transaction fails and rolls back)."""
    from orchestrator import store as store_module

    real_group_write, real_commit = store_module.group_write, DjangoRunStore._commit
    calls: list[str] = []

    def failing_commit(store, sent):
        real_commit(store, sent)
        raise OperationalError("deadlock detected")  # the group's transaction rolls back

    async def group_write(order, func, *args, **kwargs):
        mode = plan[len(calls)] if len(calls) < len(plan) else "ok"
        calls.append(mode)
        if mode == "fails after settling":
            func = partial(failing_commit, func.__self__)
        result = await real_group_write(order, func, *args, **kwargs)
        if mode == "lost":
            raise OperationalError("server closed the connection unexpectedly")
        return result

    monkeypatch.setattr(store_module, "group_write", group_write)
    return calls


@pytest.mark.parametrize("second", ["fails after settling", "lost"])
def test_a_retry_that_fails_after_settling_a_lost_answer_does_not_forget_it(any_run, monkeypatch, second):
    """The retry finds the first attempt made, then fails itself (or its own answer is lost):
    the next retry still makes nothing twice."""
    run = any_run
    store = DjangoRunStore(run.pk, lease_owner="me", publish_events=False)
    async_to_sync(store.load)()
    store._head = None  # (PostgreSQL: the group path, where these answers are lost)
    before = RunEvent.objects.filter(run=run).count()
    calls = _answers(monkeypatch, ["lost", second, "ok"])
    with pytest.raises(OperationalError):
        async_to_sync(partial(_step, store, "s1", True))()  # made, answer lost
    store.stage(StepWrite("s1", "s1", "agent", "succeeded", finished=True, output="ok"))
    store.emit("step.succeeded", {"output": "ok"}, "s1")
    with pytest.raises(OperationalError):
        async_to_sync(store.commit)()  # settles the first as made, then fails (or is lost) itself
    async_to_sync(store.commit)()  # the next retry

    assert calls == ["lost", second, "ok"]
    run.refresh_from_db()
    events = list(RunEvent.objects.filter(run=run).order_by("seq"))
    assert UsageRecord.objects.filter(run=run).count() == 1 and run.input_tokens == 100, "usage counted twice"
    assert [e.type for e in events[before:]] == ["llm.finished", "step.succeeded"]
    assert StepRun.objects.get(run=run, key="s1").status == "succeeded" and verify_chain(events).ok
    assert not store._writes and not store._events and store._doubt is None


def test_an_event_appended_by_an_action_does_not_hide_a_lost_answer(any_run, monkeypatch):
    """A cancel request appends its event between the lost commit and its retry: the run's head
    is not the one the lost commit left, but its last event is there, so the retry knows."""
    from datetime import timedelta

    from django.utils import timezone

    from orchestrator.actions.runs import do_cancel_run
    from orchestrator.engine.errors import RunCancelled

    run = any_run
    Run.objects.filter(pk=run.pk).update(lease_until=timezone.now() + timedelta(minutes=5))  # a live lease
    store = DjangoRunStore(run.pk, lease_owner="me", publish_events=False)
    async_to_sync(store.load)()
    store._head = None  # (PostgreSQL: the group path, where this answer is lost)
    _answers(monkeypatch, ["lost"])
    with pytest.raises(OperationalError):
        async_to_sync(partial(_step, store, "s1", True))()
    do_cancel_run(Run.objects.get(pk=run.pk))  # the holder is alive: only the flag and its event

    with pytest.raises(RunCancelled):  # the retry makes nothing twice, then hears of the cancel
        async_to_sync(store.commit)()

    run.refresh_from_db()
    assert UsageRecord.objects.filter(run=run).count() == 1 and run.input_tokens == 100
    assert StepRun.objects.filter(run=run, key="s1").count() == 1
    assert [e.type for e in RunEvent.objects.filter(run=run).order_by("seq")][-2:] == ["llm.finished", "run.cancel_requested"]
    assert not store._writes and not store._events

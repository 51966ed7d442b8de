"""On PostgreSQL a step's commit that has no group to share is one round trip: the run row's
guarded update, the step, usage and event rows, and the COMMIT in one multi-statement query
(`DjangoRunStore._commit_alone`). Whatever moved the run's head since this store's last commit
(an action's event, another lease holder) makes the guard fail, the server keep none of it, and
the commit take the locked group path; a write the server refuses after the guard ran leaves
nothing behind either. On every path a commit whose caller is cancelled runs to its end: its
writes are made, or put back for the next commit."""

from __future__ import annotations

import asyncio
import threading
from functools import partial

import pytest
from asgiref.sync import async_to_sync
from django.db import DatabaseError, IntegrityError, connection, transaction

from config.db_writer import group_commit_stats
from mcpgateway.inprocess import InProcessToolbox
from orchestrator.engine.errors import LeaseLost, RunCancelled
from orchestrator.engine.store import StepWrite, UsageWrite
from orchestrator.events import send_event_on_commit, verify_chain
from orchestrator.execution import execute_run
from orchestrator.models import LedgerEntry, Run, RunEvent, StepRun, UsageRecord
from orchestrator.store import DjangoRunStore
from tests.conftest import pipeline, scripted, start

pytestmark = pytest.mark.django_db(transaction=True)

LONE = "WITH moved AS (UPDATE"


@pytest.fixture
def sent(monkeypatch):
    """The queries the writer threads send to PostgreSQL, and whether each raised."""
    if connection.vendor != "postgresql":
        pytest.skip("the one-round-trip commit is PostgreSQL's (SQLite has no round trips)")
    import psycopg

    queries: list[tuple[str, bool]] = []
    original = psycopg.Cursor.execute

    def execute(cursor, query, *args, **kwargs):
        if not threading.current_thread().name.startswith("agentdeck-db-writer"):
            return original(cursor, query, *args, **kwargs)
        text = query.decode() if isinstance(query, bytes) else str(query)
        try:
            result = original(cursor, query, *args, **kwargs)
        except Exception:
            queries.append((text, False))
            raise
        queries.append((text, True))
        return result

    monkeypatch.setattr(psycopg.Cursor, "execute", execute)
    return queries


def _leased(team, steps: int = 3) -> Run:
    scripted(team, "fast", {"text": "ok"})
    run = start(pipeline(team, {"steps": [{"kind": "agent", "id": f"s{i}", "agent": "fast", "prompt": "go"}
                                          for i in range(steps)]}))
    Run.objects.filter(pk=run.pk).update(status="running", lease_owner="me")
    return run


def _step(store: DjangoRunStore, key: str, tokens: int = 0) -> None:
    store.stage(StepWrite(key, key, "agent", "succeeded", output={"text": key}, started=True, finished=True))
    if tokens:
        store.stage(UsageWrite(key, "fast", "scripted", "scripted-1", tokens, 1, "0.25"))
    store.emit("step.succeeded", {"step_id": key, "output": key}, key)


def test_the_steps_of_a_lone_run_commit_in_one_query_each(team, sent):
    scripted(team, "fast", {"text": "ok"})
    run = start(pipeline(team, {"steps": [{"kind": "agent", "id": f"s{i}", "agent": "fast", "prompt": "go"}
                                          for i in range(6)]}))
    before = group_commit_stats()

    outcome = async_to_sync(execute_run)(run.pk, toolbox=InProcessToolbox(), flush_interval=30)

    assert outcome.status == "succeeded"
    lone = [q for q, ok in sent if q.startswith(LONE)]
    # Every step's commit is one query: the first expects the head the claim read, the last
    # also ends the run (no webhook, no budget reservation to give back); none of them also
    # locked the row or committed on its own.
    assert len(lone) == 6, [q[:60] for q, _ in sent]
    assert all(ok for q, ok in sent if q.startswith(LONE))
    assert not any(q.startswith('SELECT "team_id", "last_seq"') for q, _ in sent)  # no head read locked
    for query in lone:
        assert 'INSERT INTO "orchestrator_steprun"' in query and 'INSERT INTO "orchestrator_runevent"' in query
    assert "NOT EXISTS" in lone[-1] and '"status" = \'succeeded\'' in lone[-1]
    assert group_commit_stats()[0] - before[0] >= 6  # counted as transactions of one write
    run.refresh_from_db()
    assert (run.status, run.lease_owner, run.lease_until) == ("succeeded", "", None)
    assert run.finished_at is not None and run.output == {"result": "ok"}
    assert StepRun.objects.filter(run=run, status="succeeded").count() == 6
    events = list(RunEvent.objects.filter(run=run).order_by("seq"))
    assert [e.seq for e in events] == list(range(1, len(events) + 1)) and run.last_seq == len(events)
    assert run.last_hash == events[-1].hash and verify_chain(events).ok
    usage = UsageRecord.objects.filter(run=run)
    assert usage.count() == 6
    assert (run.input_tokens, run.output_tokens) == (sum(u.input_tokens for u in usage), sum(u.output_tokens for u in usage))


def test_an_event_appended_meanwhile_sends_the_commit_down_the_locked_path(team, sent):
    run = _leased(team)

    async def scenario() -> DjangoRunStore:
        store = DjangoRunStore(run.pk, lease_owner="me", publish_events=False)
        await store.load()
        _step(store, "s0", tokens=3)
        await store.commit()  # reads the head under its lock
        return store

    store = async_to_sync(scenario)()
    with transaction.atomic():  # an action (a review decision, a cancel note) appends to the chain
        send_event_on_commit(Run.objects.get(pk=run.pk), "review.note", {"by": "someone"})
    sent.clear()

    async def second() -> None:
        _step(store, "s1", tokens=4)
        await store.commit()

    async_to_sync(second)()

    assert [ok for q, ok in sent if q.startswith(LONE)] == [False]  # tried, refused by the guard
    assert any("FOR UPDATE" in q for q, ok in sent if ok)  # then the head read under the lock
    run.refresh_from_db()
    events = list(RunEvent.objects.filter(run=run).order_by("seq"))
    assert [e.type for e in events][-2:] == ["review.note", "step.succeeded"]
    assert [e.seq for e in events] == list(range(1, len(events) + 1)) and verify_chain(events).ok
    assert sorted(StepRun.objects.filter(run=run).values_list("key", flat=True)) == ["s0", "s1"]
    assert (run.input_tokens, run.output_tokens) == (7, 2) and str(run.cost_usd.normalize()) == "0.5"

    sent.clear()  # the head is known again: the next commit is one query
    async_to_sync(partial(_commit_step, store, "s2"))()
    assert [ok for q, ok in sent if q.startswith(LONE)] == [True] and len(sent) == 1


async def _commit_step(store: DjangoRunStore, key: str) -> None:
    _step(store, key)
    await store.commit()


def test_a_lease_taken_meanwhile_fails_the_commit_and_keeps_its_writes(team, sent):
    run = _leased(team)
    store = DjangoRunStore(run.pk, lease_owner="me", publish_events=False)
    async_to_sync(store.load)()
    async_to_sync(partial(_commit_step, store, "s0"))()
    last_seq = Run.objects.get(pk=run.pk).last_seq
    Run.objects.filter(pk=run.pk).update(lease_owner="someone-else")
    sent.clear()

    with pytest.raises(LeaseLost):
        async_to_sync(partial(_commit_step, store, "s1"))()

    assert [ok for q, ok in sent if q.startswith(LONE)] == [False]
    assert [w.key for w in store._writes] == ["s1"] and [k for _, k, _ in store._events] == ["s1"]
    assert not StepRun.objects.filter(run=run, key="s1").exists()
    assert Run.objects.get(pk=run.pk).last_seq == last_seq


def test_a_cancel_flag_set_meanwhile_reaches_the_run_through_the_one_query(team, sent):
    run = _leased(team)
    store = DjangoRunStore(run.pk, lease_owner="me", publish_events=False)
    async_to_sync(store.load)()
    async_to_sync(partial(_commit_step, store, "s0"))()
    Run.objects.filter(pk=run.pk).update(cancel_requested=True)  # the flag alone, no event
    sent.clear()

    with pytest.raises(RunCancelled):
        async_to_sync(partial(_commit_step, store, "s1"))()

    assert [ok for q, ok in sent if q.startswith(LONE)] == [True]  # committed, then told
    assert StepRun.objects.filter(run=run, key="s1").exists() and not store._writes


def test_a_write_the_server_refuses_after_the_guard_leaves_nothing_behind(team, sent):
    run = _leased(team)
    store = DjangoRunStore(run.pk, lease_owner="me", publish_events=False)
    async_to_sync(store.load)()
    async_to_sync(partial(_commit_step, store, "s0"))()
    before = Run.objects.get(pk=run.pk)
    # A row the store does not know of: its insert of the same step breaks the unique key, in the
    # same query as the guard's update, which had already moved the head.
    StepRun.objects.create(run_id=run.pk, key="s1", step_id="s1", kind="agent")
    sent.clear()

    with pytest.raises(IntegrityError):
        async_to_sync(partial(_commit_step, store, "s1"))()

    assert [ok for q, ok in sent if q.startswith(LONE)] == [False]
    after = Run.objects.get(pk=run.pk)
    assert (after.last_seq, after.last_hash) == (before.last_seq, before.last_hash)
    assert not RunEvent.objects.filter(run=run, step_key="s1").exists()
    assert [w.key for w in store._writes] == ["s1"] and "s1" not in store._known_steps
    assert store._head is None  # unknown now: the next commit reads it under the lock

    StepRun.objects.filter(run=run, key="s1").delete()
    sent.clear()
    async_to_sync(store.commit)()  # the kept writes, retried
    assert not any(q.startswith(LONE) for q, _ in sent)
    assert StepRun.objects.get(run=run, key="s1").status == "succeeded"
    assert verify_chain(RunEvent.objects.filter(run=run).order_by("seq")).ok


def test_a_commit_whose_caller_is_cancelled_is_still_made(team, sent):
    """At a run's end the flusher is cancelled, and a worker shutting down cancels its runs, maybe
    in the middle of a commit: its writes, taken from the buffers, are made (as a group commit's
    are) and the cancel reaches the caller once they are."""
    from config.db_writer import _executor
    from orchestrator.engine.store import LedgerWrite

    run = _leased(team)
    store = DjangoRunStore(run.pk, lease_owner="me", publish_events=False)
    async_to_sync(store.load)()
    async_to_sync(partial(_commit_step, store, "s0"))()
    assert store._head is not None

    async def scenario() -> bool:
        gate = threading.Event()
        busy = [_executor().submit(gate.wait, 10) for _ in range(8)]  # the writer threads on other work
        store.stage(StepWrite("s1", "s1", "agent", "succeeded", output={"text": "s1"}, started=True, finished=True))
        store.stage(LedgerWrite("s1", 1, 0, "tool", "send_email", {"to": "a@example.com"}, {"ok": True}))
        store.emit("step.succeeded", {"step_id": "s1"}, "s1")
        commit = asyncio.ensure_future(store.commit())
        await asyncio.sleep(0.05)
        commit.cancel()
        await asyncio.sleep(0.05)
        gate.set()
        try:
            await commit
        except asyncio.CancelledError:
            cancelled = True
        else:
            cancelled = False
        for job in busy:
            job.result()
        return cancelled

    assert async_to_sync(scenario)() is True
    assert [ok for q, ok in sent if q.startswith(LONE)][-1:] == [True]
    assert StepRun.objects.get(run=run, key="s1").status == "succeeded"
    assert LedgerEntry.objects.filter(run=run, step_key="s1").count() == 1
    assert not store._writes and not store._events
    assert verify_chain(RunEvent.objects.filter(run=run).order_by("seq")).ok


def test_a_cancelled_callers_group_commit_that_fails_puts_its_writes_back(team):
    """The group path too: a caller cancelled while its group commit is under way waits for it,
    and if the group fails (here a write queued with it breaks a foreign key at COMMIT), its
    writes go back into the buffers for the next commit instead of being dropped. (The group
    checks keys as each statement ends, so a dangling key would fail its own write alone: what
    fails this group whole is a read that fails, which aborts its transaction.)"""
    import time

    from config.db_writer import group_write

    run = _leased(team)
    store = DjangoRunStore(run.pk, lease_owner="me", publish_events=False)
    async_to_sync(store.load)()

    def dangling() -> None:  # the group cannot commit: a failed read aborts it (PostgreSQL), a dangling key fails its COMMIT (SQLite)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 / %s", [0])
        StepRun.objects.create(run_id=2_000_000_000, key="ghost", step_id="ghost", kind="agent")

    async def scenario() -> BaseException | None:
        blocker = asyncio.ensure_future(group_write(0, time.sleep, 0.3))
        await asyncio.sleep(0.05)
        poison = asyncio.ensure_future(group_write(0, dangling))  # rides in the run's group
        _step(store, "s0")
        commit = asyncio.ensure_future(store.commit())
        await asyncio.sleep(0.05)
        commit.cancel()
        results = await asyncio.gather(commit, poison, blocker, return_exceptions=True)
        return results[0]

    outcome = async_to_sync(scenario)()

    assert isinstance(outcome, asyncio.CancelledError)  # the cancel goes on, once the group has failed
    assert store._failure is not None and isinstance(store._failure[1], DatabaseError)
    assert [w.key for w in store._writes] == ["s0"] and [k for _, k, _ in store._events] == ["s0"]
    assert not StepRun.objects.filter(run=run, key="s0").exists()
    async_to_sync(store.commit)()  # the retry, in a transaction of its own
    assert StepRun.objects.get(run=run, key="s0").status == "succeeded"
    assert verify_chain(RunEvent.objects.filter(run=run).order_by("seq")).ok



def _ended_by(team, sent, prepare) -> tuple[Run, list[bool]]:
    """A leased run's last commit (after one step's), with `prepare(run)` done before it: the
    run as it ended, and which one-query commits were sent for the last commit (and whether each
    was made)."""
    from orchestrator.engine.store import RunWrite

    run = _leased(team)
    store = DjangoRunStore(run.pk, lease_owner="me", publish_events=False)
    async_to_sync(store.load)()
    async_to_sync(partial(_commit_step, store, "s0"))()
    prepare(run)
    sent.clear()

    async def end() -> None:
        _step(store, "s1", tokens=2)
        store.stage(RunWrite("succeeded", output={"text": "done"}))
        store.emit("run.succeeded", {"output": {"text": "done"}})
        await store.commit(final=True)

    async_to_sync(end)()
    run.refresh_from_db()
    assert (run.status, run.output, run.lease_owner, run.lease_until) == ("succeeded", {"text": "done"}, "", None)
    assert run.finished_at is not None and verify_chain(RunEvent.objects.filter(run=run).order_by("seq")).ok
    assert StepRun.objects.get(run=run, key="s1").status == "succeeded"
    return run, [ok for q, ok in sent if q.startswith(LONE)]


def test_a_run_ends_in_one_query_when_nothing_is_left_to_give_back_or_queue(team, sent):
    run, lone = _ended_by(team, sent, lambda run: None)
    assert lone == [True] and len(sent) == 1
    assert (run.input_tokens, run.output_tokens) == (2, 1)


def test_a_run_whose_pipeline_has_a_webhook_ends_on_the_group_path(team, sent):
    from orchestrator.models import WebhookDelivery
    from orchestrator.webhooks import do_create_webhook

    run, lone = _ended_by(team, sent, lambda run: do_create_webhook(run.pipeline_version.pipeline, "https://example.com/h"))
    assert lone == [False]  # the guard saw the webhook: nothing of the query was kept
    delivery = WebhookDelivery.objects.get(webhook__pipeline=run.pipeline_version.pipeline)
    assert delivery.event == "run.succeeded" and delivery.payload["run_id"] == run.pk
    assert RunEvent.objects.filter(run=run, type="run.succeeded").count() == 1


def test_a_run_holding_a_budget_reservation_ends_on_the_group_path_which_gives_it_back(team, sent):
    from decimal import Decimal

    from orchestrator.models import BudgetCounter, BudgetReservation, Limit

    def reserve(run: Run) -> None:
        limit = Limit.objects.create(team_id=run.team_id, scope="team", kind="tokens_per_day", value=Decimal(100))
        BudgetCounter.objects.create(limit=limit, window=1, used=30)
        BudgetReservation.objects.create(run=run, lease_owner="me", limit=limit, window=1, amount=30)

    run, lone = _ended_by(team, sent, reserve)
    assert lone == [False]
    assert not BudgetReservation.objects.filter(run=run).exists()
    assert BudgetCounter.objects.get().used == 0  # given back by the run's last commit


def test_a_disabled_webhook_does_not_keep_a_run_off_the_one_query(team, sent):
    from orchestrator.models import Webhook, WebhookDelivery
    from orchestrator.webhooks import do_create_webhook

    def disabled(run: Run) -> None:
        hook, _ = do_create_webhook(run.pipeline_version.pipeline, "https://example.com/h")
        Webhook.objects.filter(pk=hook.pk).update(enabled=False)

    _, lone = _ended_by(team, sent, disabled)
    assert lone == [True] and not WebhookDelivery.objects.exists()


def test_a_webhook_not_subscribed_to_the_runs_end_does_not_keep_it_off_the_one_query(team, sent):
    from orchestrator.models import WebhookDelivery
    from orchestrator.webhooks import do_create_webhook

    def elsewhere(run: Run) -> None:  # every event but the one this run's end would queue
        do_create_webhook(run.pipeline_version.pipeline, "https://example.com/h",
                          ["run.failed", "run.cancelled", "review.needed"])

    _, lone = _ended_by(team, sent, elsewhere)
    assert lone == [True] and not WebhookDelivery.objects.exists()


def test_a_failed_run_whose_webhook_wants_failures_ends_on_the_group_path(team, sent):
    from orchestrator.engine.store import RunWrite
    from orchestrator.models import WebhookDelivery
    from orchestrator.webhooks import do_create_webhook

    run = _leased(team)
    do_create_webhook(run.pipeline_version.pipeline, "https://example.com/h", ["run.failed"])
    store = DjangoRunStore(run.pk, lease_owner="me", publish_events=False)
    async_to_sync(store.load)()
    async_to_sync(partial(_commit_step, store, "s0"))()
    sent.clear()

    async def end() -> None:
        store.stage(RunWrite("failed", error="step s1 failed"))
        store.emit("run.failed", {"error": "step s1 failed"})
        await store.commit(final=True)

    async_to_sync(end)()
    assert [ok for q, ok in sent if q.startswith(LONE)] == [False]
    delivery = WebhookDelivery.objects.get(webhook__pipeline=run.pipeline_version.pipeline)
    assert delivery.event == "run.failed" and delivery.payload["run_id"] == run.pk
    run.refresh_from_db()
    assert (run.status, run.lease_owner) == ("failed", "")


def test_a_first_commit_after_the_head_moved_since_the_load_takes_the_locked_path(team, sent):
    run = _leased(team)
    store = DjangoRunStore(run.pk, lease_owner="me", publish_events=False)
    async_to_sync(store.load)()
    with transaction.atomic():
        send_event_on_commit(Run.objects.get(pk=run.pk), "review.note", {"by": "someone"})
    sent.clear()

    async_to_sync(partial(_commit_step, store, "s0"))()

    assert [ok for q, ok in sent if q.startswith(LONE)] == [False]
    events = list(RunEvent.objects.filter(run=run).order_by("seq"))
    assert [e.type for e in events][-2:] == ["review.note", "step.succeeded"] and verify_chain(events).ok


def test_a_failed_run_ends_in_one_query_too(team, sent):
    from orchestrator.engine.store import RunWrite

    run = _leased(team)
    store = DjangoRunStore(run.pk, lease_owner="me", publish_events=False)
    async_to_sync(store.load)()
    async_to_sync(partial(_commit_step, store, "s0"))()
    sent.clear()

    async def end() -> None:
        store.stage(RunWrite("failed", error="step s1 failed"))
        store.emit("run.failed", {"error": "step s1 failed"})
        await store.commit(final=True)

    async_to_sync(end)()
    run.refresh_from_db()
    assert [ok for q, ok in sent if q.startswith(LONE)] == [True]
    assert (run.status, run.error, run.lease_owner, run.lease_until) == ("failed", "step s1 failed", "", None)
    assert run.finished_at is not None


def test_a_reservation_committed_while_the_last_commit_waits_for_the_row_is_given_back(team, sent):
    """A budget reservation's writer locks the run row first; a lone last commit that waits for
    that lock must see the reservation once it is committed (its check is a statement of its
    own after the guard, with a fresh snapshot) and leave the run's end to the group path,
    which gives the room back."""
    import time
    from decimal import Decimal

    import psycopg

    from orchestrator.engine.store import RunWrite
    from orchestrator.models import BudgetCounter, BudgetReservation, Limit

    run = _leased(team)
    store = DjangoRunStore(run.pk, lease_owner="me", publish_events=False)
    async_to_sync(store.load)()
    async_to_sync(partial(_commit_step, store, "s0"))()
    limit = Limit.objects.create(team_id=run.team_id, scope="team", kind="tokens_per_day", value=Decimal(100))
    BudgetCounter.objects.create(limit=limit, window=1, used=0)
    settings_ = connection.settings_dict
    other = psycopg.connect(dbname=settings_["NAME"], user=settings_["USER"], host=settings_["HOST"],
                            port=settings_["PORT"] or 5432, password=settings_["PASSWORD"] or None)
    with other.cursor() as cursor:  # what budgets.reserve does: the run row first, then the room
        cursor.execute("SELECT lease_owner FROM orchestrator_run WHERE id = %s FOR UPDATE", [run.pk])
        cursor.execute("INSERT INTO orchestrator_budgetreservation (run_id, lease_owner, limit_id, \"window\", amount, "
                       "settled, created_at) VALUES (%s, 'me', %s, 1, 30, false, now())", [run.pk, limit.pk])
        cursor.execute("UPDATE orchestrator_budgetcounter SET used = used + 30 WHERE limit_id = %s", [limit.pk])
    sent.clear()
    committer = threading.Thread(target=lambda: (time.sleep(0.5), other.commit()))
    committer.start()

    async def end() -> None:
        store.stage(RunWrite("succeeded", output={"text": "done"}))
        store.emit("run.succeeded", {"output": {"text": "done"}})
        await store.commit(final=True)

    try:
        async_to_sync(end)()
    finally:
        committer.join()
        other.close()
    run.refresh_from_db()
    assert [ok for q, ok in sent if q.startswith(LONE)] == [False]
    assert run.status == "succeeded" and not BudgetReservation.objects.filter(run=run).exists()
    assert BudgetCounter.objects.get().used == 0

"""A step commit's batched writes (PostgreSQL pipeline mode; plain statements on SQLite): a
statement of the batch that fails fails that commit, rolls back all of its writes and events,
leaves the connection usable and the other runs of the group committed; the retry commits."""

from __future__ import annotations

import asyncio
import time

import pytest
from asgiref.sync import async_to_sync
from django.db import IntegrityError
from django.utils import timezone

from config.db_writer import group_write
from orchestrator.engine.store import StepWrite
from orchestrator.events import verify_chain
from orchestrator.models import Run, RunEvent, StepRun
from orchestrator.store import DjangoRunStore
from tests.conftest import pipeline, scripted, start

pytestmark = pytest.mark.django_db(transaction=True)


def _one_step() -> dict:
    return {"steps": [{"kind": "agent", "id": "s0", "agent": "fast", "prompt": "step"}]}


def _clashing_row(run_id: int) -> None:
    """A row the store does not know of: its own insert of step s0 then breaks the unique key."""
    StepRun.objects.create(run_id=run_id, key="s0", step_id="s0", kind="agent", started_at=timezone.now())


@pytest.mark.parametrize("shared", [False, True])
def test_a_failed_statement_of_a_step_commit_fails_that_commit_only(team, shared):
    scripted(team, "fast", {"text": "ok"})
    pipe = pipeline(team, _one_step())
    failing, other = start(pipe), start(pipe)
    Run.objects.filter(pk__in=[failing.pk, other.pk]).update(status="running", lease_owner="me")

    async def scenario() -> tuple[list, list]:
        stores = [DjangoRunStore(r.pk, lease_owner="me", publish_events=False) for r in (failing, other)]
        for store in stores:
            await store.load()
        await group_write(0, _clashing_row, failing.pk)
        for store in stores if shared else stores[:1]:
            store.stage(StepWrite("s0", "s0", "agent", "succeeded", output="ok", started=True, finished=True))
            store.emit("step.succeeded", {"step_id": "s0", "output": "ok"}, "s0")
        blocker = asyncio.ensure_future(group_write(0, time.sleep, 0.3))
        await asyncio.sleep(0.05)
        results = await asyncio.gather(*(s.commit() for s in (stores if shared else stores[:1])),
                                       return_exceptions=True)
        await blocker
        # The connection the failure happened on still works, and the retry commits.
        await group_write(0, StepRun.objects.filter(run_id=failing.pk, key="s0").delete)
        await stores[0].commit()
        return results, [(t, k) for t, k, _ in stores[0]._events]

    results, left = async_to_sync(scenario)()

    assert isinstance(results[0], IntegrityError), results
    if shared:
        assert results[1] is None, results
        assert StepRun.objects.get(run=other, key="s0").status == "succeeded"
        assert verify_chain(RunEvent.objects.filter(run=other).order_by("seq")).ok
    assert left == []
    assert StepRun.objects.get(run=failing, key="s0").status == "succeeded"
    events = list(RunEvent.objects.filter(run=failing).order_by("seq"))
    assert [e.type for e in events].count("step.succeeded") == 1
    assert verify_chain(events).ok
    run = Run.objects.get(pk=failing.pk)
    assert run.last_seq == events[-1].seq


def test_a_failure_of_the_last_statement_of_a_batched_commit_fails_it(team):
    """The run row's update is the last statement sent; its failure (PostgreSQL checks the
    column's length) surfaces from the commit and takes the step row and events with it."""
    from django.db import DataError, connection

    from orchestrator.engine.store import RunWrite

    if connection.vendor != "postgresql":
        pytest.skip("SQLite does not check a varchar's length")
    scripted(team, "fast", {"text": "ok"})
    run = start(pipeline(team, _one_step()))
    Run.objects.filter(pk=run.pk).update(status="running", lease_owner="me")

    async def scenario():
        store = DjangoRunStore(run.pk, lease_owner="me", publish_events=False)
        await store.load()
        store.stage(StepWrite("s0", "s0", "agent", "succeeded", output="ok", started=True, finished=True))
        store.emit("step.succeeded", {"step_id": "s0", "output": "ok"}, "s0")
        store.stage(RunWrite("x" * 40))
        try:
            await store.commit()
        except Exception as exc:
            return exc
        return None

    failure = async_to_sync(scenario)()

    assert isinstance(failure, DataError), failure
    assert not StepRun.objects.filter(run=run).exists()
    assert not RunEvent.objects.filter(run=run, type="step.succeeded").exists()
    assert Run.objects.get(pk=run.pk).status == "running"


def test_a_string_found_clean_is_redacted_once_it_becomes_a_secret(team):
    """The commit's memo of clean strings belongs to one redactor: a secret written later is
    redacted from the next commit even where the same string was committed clean before."""
    from mcpgateway import redaction

    scripted(team, "fast", {"text": "ok"})
    run = start(pipeline(team, _one_step()))
    Run.objects.filter(pk=run.pk).update(status="running", lease_owner="me")
    value = "zq-later-secret-0123456789"
    secrets: list[str] = []
    redaction.register_secret_source("test-later-secret", lambda: list(secrets), needs_db=False)
    try:
        async def scenario():
            store = DjangoRunStore(run.pk, lease_owner="me", publish_events=False)
            await store.load()
            store.emit("step.note", {"text": value, value: "key"}, "s0")
            await store.commit()
            secrets.append(value)
            redaction.invalidate()
            store.emit("step.note", {"text": value, value: "key"}, "s0")
            await store.commit()

        async_to_sync(scenario)()
    finally:
        redaction._sources.pop("test-later-secret", None)
        redaction.invalidate()
    first, second = [e.data for e in RunEvent.objects.filter(run=run, type="step.note").order_by("seq")]
    assert first == {"text": value, value: "key"}
    assert value not in str(second) and "[REDACTED:" in second["text"]

"""A run whose process dies mid-step resumes from its last persisted point.

The subprocess test kills the process with SIGKILL while a step waits on its model, then
resumes here: completed steps, model calls and tool calls are not repeated.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from mcpgateway.inprocess import InProcessToolbox
from orchestrator.events import verify_chain
from orchestrator.models import LedgerEntry, Run, RunEvent, StepRun, UsageRecord
from tests.conftest import execute, pipeline, scripted, start

pytestmark = pytest.mark.django_db(transaction=True)

SPEC = {"steps": [
    {"kind": "agent", "id": "first", "agent": "a1", "prompt": "one"},
    {"kind": "agent", "id": "second", "agent": "a2", "prompt": "two"},
    {"kind": "agent", "id": "third", "agent": "a3", "prompt": "three"},
]}


def _agents(team, slow_ms: int) -> None:
    call = lambda text: {"tool_calls": [{"name": "t__record", "arguments": {"text": text}}]}  # noqa: E731
    scripted(team, "a1", call("first"), {"text": "first done"})
    scripted(team, "a2", call("second-a"), call("second-b"), {"text": "second done", "delay_ms": slow_ms})
    scripted(team, "a3", call("third"), {"text": "third done"})


def _wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


@pytest.mark.slow
def test_it_resumes_a_killed_run_without_repeating_steps_or_tool_calls(team, tmp_path: Path):
    _agents(team, slow_ms=30_000)
    run = start(pipeline(team, SPEC))
    call_log = tmp_path / "calls.jsonl"
    env = {**os.environ, "AGENTDECK_TOOLBOX": "tests.fakes.counting_tools.factory", "AGENTDECK_TEST_CALL_LOG": str(call_log)}
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("postgresql"):  # the subprocess uses the test database too
        env["DATABASE_URL"] = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    else:
        env["SQLITE_PATH"] = str(db["NAME"])
    proc = subprocess.Popen([sys.executable, "manage.py", "run_pipeline", "--resume", str(run.pk)],
                            cwd=settings.BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        # Both tool calls of the second step are durable; its last model call is in flight.
        _wait_for(lambda: LedgerEntry.objects.filter(run=run, step_key="second", kind="tool").count() == 2)
        time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    killed = Run.objects.get(pk=run.pk)
    assert killed.status == "running" and killed.lease_owner
    assert StepRun.objects.get(run=run, key="first").status == "succeeded"
    # A holder on another host keeps its lease until it runs out (nobody can tell it died);
    # the dead holder on this host is taken over at once, without waiting for the lease.
    from asgiref.sync import async_to_sync

    from orchestrator.execution import execute_run

    Run.objects.filter(pk=run.pk).update(lease_owner="another-host:1:abcdef:0000")
    assert async_to_sync(execute_run)(run.pk) is None
    Run.objects.filter(pk=run.pk).update(lease_owner=killed.lease_owner)
    assert Run.objects.get(pk=run.pk).lease_until > timezone.now()

    # Resume here with a fast model and count again: the toolbox here records in-process.
    calls: list[tuple[str, dict]] = []
    toolbox = InProcessToolbox(grants={"*": ["*"]})
    toolbox.register("t__record", lambda text: calls.append(("t__record", {"text": text})) or "recorded")
    from orchestrator.models import Agent

    agent = Agent.objects.get(team=team, name="a2")
    agent.options["script"]["replies"][2]["delay_ms"] = 0
    agent.save()
    run = execute(run, toolbox)

    assert run.status == "succeeded", run.error
    before_kill = [json.loads(line)["text"] for line in call_log.read_text().splitlines()]
    assert before_kill == ["first", "second-a", "second-b"]
    assert calls == [("t__record", {"text": "third"})], "only the third step's tool ran after resume"
    # model calls: first step 2 (none repeated), second 3 (the one in flight re-made), third 2
    per_step = {key: UsageRecord.objects.filter(run=run, step_key=key).count() for key in ("first", "second", "third")}
    assert per_step == {"first": 2, "second": 3, "third": 2}
    assert RunEvent.objects.filter(run=run, type="step.succeeded", step_key="first").count() == 1
    assert RunEvent.objects.filter(run=run, type="run.resumed").count() == 1
    assert verify_chain(RunEvent.objects.filter(run=run).order_by("seq")).ok


def test_it_replays_a_half_done_attempt_from_the_ledger(team):
    """In-process: a run interrupted after a step's tool call (state as a crash leaves it) resumes
    that step from its ledger."""
    _agents(team, slow_ms=0)
    calls: list[tuple[str, dict]] = []
    toolbox = InProcessToolbox(grants={"*": ["*"]})
    toolbox.register("t__record", lambda text: calls.append(("t__record", {"text": text})) or "recorded")
    run = start(pipeline(team, SPEC))

    # Make the second step's final model call fail hard once, as a crash would leave it:
    # the run pauses with the step's ledger holding its two tool calls.
    from orchestrator.models import Agent

    agent = Agent.objects.get(team=team, name="a2")
    agent.options["script"]["replies"][2] = {"error": "connection reset", "retryable": False}
    agent.save()
    run = execute(run, toolbox)
    assert run.status == "waiting_review"
    assert [c[1]["text"] for c in calls] == ["first", "second-a", "second-b"]

    agent.options["script"]["replies"][2] = {"text": "second done"}
    agent.save()
    from orchestrator.actions import do_decide_review

    do_decide_review(run.review_items.get(), None, "resume", submit=False)
    run = execute(run, toolbox)

    assert run.status == "succeeded", run.error
    assert [c[1]["text"] for c in calls] == ["first", "second-a", "second-b", "third"]
    assert UsageRecord.objects.filter(run=run, step_key="second").count() == 3


def test_it_stops_a_worker_that_lost_its_lease(team):
    """A worker that stalled past its lease while another took the run stops and writes nothing."""
    from orchestrator.runners import get_runner

    scripted(team, "slow", {"text": "late", "delay_ms": 3000})
    run = start(pipeline(team, {"steps": [{"kind": "agent", "id": "a", "agent": "slow", "prompt": "x"}]}))
    runner = get_runner()
    runner.submit(run.pk)
    _wait_for(lambda: StepRun.objects.filter(run=run, key="a", status="running").exists())
    events_before = RunEvent.objects.filter(run=run).count()

    Run.objects.filter(pk=run.pk).update(lease_owner="another-worker")
    outcome = runner._futures[run.pk].result(timeout=10)

    assert outcome.status == "lost"
    run.refresh_from_db()
    assert (run.status, run.lease_owner) == ("running", "another-worker")
    assert RunEvent.objects.filter(run=run).count() == events_before
    assert not RunEvent.objects.filter(run=run, type__in=["run.cancelled", "run.failed", "run.succeeded"]).exists()


@pytest.mark.slow
def test_it_hands_the_run_back_when_a_worker_shuts_down(team, tmp_path: Path):
    """SIGTERM: the process exits cleanly and expires its lease, so another takes over at once."""
    _agents(team, slow_ms=30_000)
    run = start(pipeline(team, SPEC))
    env = {**os.environ, "AGENTDECK_TOOLBOX": "tests.fakes.counting_tools.factory",
           "AGENTDECK_TEST_CALL_LOG": str(tmp_path / "calls.jsonl")}
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("postgresql"):
        env["DATABASE_URL"] = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    else:
        env["SQLITE_PATH"] = str(db["NAME"])
    proc = subprocess.Popen([sys.executable, "manage.py", "run_pipeline", "--resume", str(run.pk)],
                            cwd=settings.BASE_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(lambda: LedgerEntry.objects.filter(run=run, step_key="second", kind="tool").count() == 2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 143

    handed = Run.objects.get(pk=run.pk)
    assert handed.status == "running"
    assert handed.lease_until <= timezone.now(), "the lease was expired at shutdown, not left to run out"

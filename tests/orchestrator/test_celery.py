"""The distributed shape: runs executed by real Celery worker processes (Redis broker) on the
test database, a worker killed mid-run, and many runs over two workers."""

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

from orchestrator.events import verify_chain
from orchestrator.models import Run, RunEvent, StepRun, UsageRecord
from tests.conftest import pipeline, scripted, start

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
# This file's broker (also test_hand_back.py's and test_interrupted_calls.py's): Redis database
# 14, or one of its own per pytest-xdist worker. Two processes of one test session (or two
# sessions) on one database flush each other's queues and run each other's tasks: with
# TEST_WORKERS=2, four hand-back tests timed out that way while test_celery.py ran beside them.
_SPARE_DBS = (5, 4, 3, 2, 1)  # (no other test or benchmark uses these)
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
_INDEX = int(_WORKER[2:]) if _WORKER.startswith("gw") and _WORKER[2:].isdigit() else 0
BROKER = f"redis://127.0.0.1:6379/{14 if _INDEX == 0 else _SPARE_DBS[(_INDEX - 1) % len(_SPARE_DBS)]}"


def _redis_or_skip() -> None:
    import redis

    try:
        redis.Redis.from_url(BROKER, socket_connect_timeout=1).flushdb()
    except redis.exceptions.ConnectionError:
        pytest.skip(f"no Redis at {BROKER}: the Celery tests need a broker")


def _worker_env(tmp: Path) -> dict[str, str]:
    env = {**os.environ, "CELERY_BROKER_URL": BROKER, "AGENTDECK_RUNNER": "celery", "AGENTDECK_RUN_LEASE_S": "2",
           "AGENTDECK_TOOLBOX": "tests.fakes.counting_tools.factory", "AGENTDECK_TEST_CALL_LOG": str(tmp / "calls.jsonl"),
           "GATEWAY_AUTOSTART": "false"}
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("postgresql"):
        env["DATABASE_URL"] = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    else:
        env["SQLITE_PATH"] = str(db["NAME"])
    return env


class Workers:
    def __init__(self, tmp: Path, count: int, *, gateway: bool = False, env: dict[str, str] | None = None):
        """`count` worker processes; with `gateway`, their runs call tools through the real gateway."""
        self.env = {**_worker_env(tmp), **(env or {})}
        if gateway:
            self.env.pop("AGENTDECK_TOOLBOX")
        self.procs = [subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo", "-n", f"w{i}@%h", "-l", "warning"],
            cwd=settings.BASE_DIR, env=self.env, stdout=open(tmp / f"worker{i}.log", "w"), stderr=subprocess.STDOUT)
            for i in range(count)]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def broker():
    """A Celery client of its own on the test broker: the project's app keeps its configuration
    (and its cached connections) untouched."""
    _redis_or_skip()
    from celery import Celery

    sender = Celery("agentdeck-test-sender", broker=BROKER, set_as_current=False)
    yield sender
    sender.close()


def _wait(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def _submit(broker, run: Run) -> None:
    broker.send_task("orchestrator.tasks.execute_run_task", args=[run.pk])


def test_it_runs_a_pipeline_on_a_celery_worker(team, broker, tmp_path):
    scripted(team, "w", {"tool_calls": [{"name": "t__record", "arguments": {"text": "hello"}}]}, {"text": "done: {{last}}"})
    workers = Workers(tmp_path, 1)
    try:
        run = start(pipeline(team, {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "go"}]}))
        _submit(broker, run)
        _wait(lambda: Run.objects.get(pk=run.pk).is_finished)
    finally:
        workers.stop()
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert run.output["result"] == "done: recorded hello"
    assert run.lease_owner == ""


def test_it_resumes_on_another_worker_when_one_dies_mid_run(team, broker, tmp_path):
    record = lambda text: {"tool_calls": [{"name": "t__record", "arguments": {"text": text}}]}  # noqa: E731
    scripted(team, "a1", record("first"), {"text": "first done"})
    scripted(team, "a2", record("second"), {"text": "second done", "delay_ms": 4000})
    scripted(team, "a3", record("third"), {"text": "third done"})
    spec = {"steps": [{"kind": "agent", "id": s, "agent": a, "prompt": s} for s, a in
                      (("first", "a1"), ("second", "a2"), ("third", "a3"))]}
    workers = Workers(tmp_path, 2)
    try:
        run = start(pipeline(team, spec))
        _submit(broker, run)
        # the second step's tool call is durable; its last model call is in flight
        _wait(lambda: Run.objects.filter(pk=run.pk, steps__key="second", ledger__step_key="second", ledger__kind="tool").exists())
        owner = Run.objects.get(pk=run.pk).lease_owner
        victim = int(owner.split(":")[1])
        assert victim in [p.pid for p in workers.procs]
        os.kill(victim, signal.SIGKILL)
        # the lease (2 s) expires; the stuck-runs task hands the run to the surviving worker
        _wait(lambda: Run.objects.get(pk=run.pk).lease_until < timezone.now(), 10)
        broker.send_task("orchestrator.tasks.requeue_stuck_runs_task")
        _wait(lambda: Run.objects.get(pk=run.pk).is_finished, 60)
    finally:
        workers.stop()
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert run.lease_owner == ""
    calls = [json.loads(line)["text"] for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert calls == ["first", "second", "third"], "no completed tool call repeated"
    per_step = {k: UsageRecord.objects.filter(run=run, step_key=k).count() for k in ("first", "second", "third")}
    # second: its tool-requesting turn (kept) and its final turn (in flight when killed, made once by the survivor)
    assert per_step == {"first": 2, "second": 2, "third": 2}
    assert StepRun.objects.filter(run=run, status="succeeded").count() == 3
    assert RunEvent.objects.filter(run=run, type="step.succeeded", step_key="first").count() == 1
    assert verify_chain(RunEvent.objects.filter(run=run).order_by("seq")).ok
    resumed = RunEvent.objects.get(run=run, type="run.resumed")
    assert resumed.data["worker"] != owner and resumed.data["completed_steps"] == 1


def test_it_finishes_200_runs_on_two_workers(team, broker, tmp_path):
    scripted(team, "w", {"text": "ok", "delay_ms": 20})
    pipe = pipeline(team, {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "go"}]})
    runs = [start(pipe) for _ in range(200)]
    workers = Workers(tmp_path, 2)
    try:
        for run in runs:
            _submit(broker, run)
        _wait(lambda: Run.objects.filter(status="succeeded").count() == 200, 240)
    finally:
        workers.stop()
    workers_used = {e.data["worker"].split(":")[1] for e in RunEvent.objects.filter(type="run.started")}
    assert RunEvent.objects.filter(type="run.started").count() == 200
    assert len(workers_used) == 2, "both workers executed runs"

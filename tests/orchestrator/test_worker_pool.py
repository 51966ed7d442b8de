"""A worker process holds many runs at once on one event loop (Celery's threads pool, as
shipped: no --pool on the command line), bounded by AGENTDECK_RUNS_PER_WORKER, and loses
none of them when it is killed or shut down mid-flight."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.db.models import Max, Min
from django.utils import timezone

from orchestrator.execution import execute_run
from orchestrator.models import Agent, Run, RunEvent, StepRun, UsageRecord
from orchestrator.runners import worker_pool
from orchestrator.runners.lease_keeper import LeaseKeeper
from tests.conftest import pipeline, scripted, start
from tests.orchestrator.test_celery import _submit, _wait, _worker_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
BROKER = "redis://127.0.0.1:6379/10"  # its own: workers of other test files consume from theirs


@pytest.fixture
def broker():
    """A Celery client of its own on this file's broker database (emptied first)."""
    import redis
    from celery import Celery

    try:
        redis.Redis.from_url(BROKER, socket_connect_timeout=1).flushdb()
    except redis.exceptions.ConnectionError:
        pytest.skip(f"no Redis at {BROKER}: the worker pool tests need a broker")
    sender = Celery("agentdeck-test-pool-sender", broker=BROKER, set_as_current=False)
    yield sender
    sender.close()


def _pool_worker(tmp: Path, name: str, **env: str) -> subprocess.Popen:
    """A worker as shipped: the settings choose its pool (threads) and its size."""
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-n", f"{name}@%h", "-l", "warning"],
        cwd=settings.BASE_DIR, env={**_worker_env(tmp), "CELERY_BROKER_URL": BROKER, **env}, stdout=open(tmp / f"{name}.log", "w"),
        stderr=subprocess.STDOUT)


def _stop(*procs: subprocess.Popen) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _max_in_flight(runs: list[Run]) -> int:
    """The most runs started and not yet finished at one moment, from their persisted events
    (from `run.started` to their last event)."""
    spans = RunEvent.objects.filter(run__in=runs).exclude(type="run.queued").values("run_id").annotate(first=Min("created_at"), last=Max("created_at"))
    edges = sorted([(s["first"], 1) for s in spans] + [(s["last"], -1) for s in spans], key=lambda e: (e[0], e[1]))
    current = peak = 0
    for _, delta in edges:
        current += delta
        peak = max(peak, current)
    return peak


def _pids(runs: list[Run], type: str = "run.started") -> set[str]:
    return {e.data["worker"].split(":")[1] for e in RunEvent.objects.filter(run__in=runs, type=type)}


def test_it_holds_many_runs_at_once_in_one_process(team, broker, tmp_path):
    latency_s = 4.0
    scripted(team, "w", {"text": "ok", "delay_ms": int(latency_s * 1000)})
    pipe = pipeline(team, {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "go"}]})
    runs = [start(pipe) for _ in range(50)]
    worker = _pool_worker(tmp_path, "pool", AGENTDECK_RUNS_PER_WORKER="100")
    try:
        time.sleep(3)  # connected and consuming
        started = time.monotonic()
        for run in runs:
            _submit(broker, run)
        _wait(lambda: Run.objects.filter(pk__in=[r.pk for r in runs], status="succeeded").count() == 50, 120)
        took = time.monotonic() - started
    finally:
        _stop(worker)
    assert _pids(runs) == {str(worker.pid)}, "one process executed them all"
    assert _max_in_flight(runs) >= 40, "the process held (nearly) all 50 runs at once"
    # Four at a time (a prefork worker's --concurrency=4) would take 50 / 4 x 4 s = 50 s.
    assert took < 25, f"50 runs of one {latency_s:.0f} s model call took {took:.1f} s"


def test_it_holds_no_more_runs_than_the_setting_allows(team, broker, tmp_path):
    scripted(team, "w", {"text": "ok", "delay_ms": 1500})
    pipe = pipeline(team, {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "go"}]})
    runs = [start(pipe) for _ in range(24)]
    worker = _pool_worker(tmp_path, "pool", AGENTDECK_RUNS_PER_WORKER="8")
    try:
        for run in runs:
            _submit(broker, run)
        _wait(lambda: Run.objects.filter(pk__in=[r.pk for r in runs], status="succeeded").count() == 24, 120)
    finally:
        _stop(worker)
    assert 4 <= _max_in_flight(runs) <= 8


def test_its_pool_threads_are_started_before_the_first_run_arrives(broker, tmp_path):
    """All AGENTDECK_RUNS_PER_WORKER threads exist once the worker is ready, before any message:
    a burst of runs does not wait for a thread start per message (config/celery.py)."""
    worker = _pool_worker(tmp_path, "prestart", AGENTDECK_RUNS_PER_WORKER="60")
    try:
        threads = lambda: len(os.listdir(f"/proc/{worker.pid}/task"))  # noqa: E731
        _wait(lambda: threads() >= 60, 60)
        time.sleep(0.5)
        assert 60 <= threads() < 90, threads()  # the pool's 60, plus the worker's own few
    finally:
        _stop(worker)


def test_prestarted_threads_are_idle_and_serve_tasks_without_new_starts():
    from config.celery import prestart_threads

    executor = ThreadPoolExecutor(max_workers=24)
    try:
        assert prestart_threads(executor, 12) == 12
        started = {thread.ident for thread in executor._threads}
        deadline = time.monotonic() + 5
        while executor._idle_semaphore._value < 12 and time.monotonic() < deadline:
            time.sleep(0.01)  # the prestart waits end: twelve idle threads
        # Tasks one after another (room for 24 threads): each goes to an idle thread, none starts one.
        ran = {executor.submit(threading.get_ident).result(timeout=5) for _ in range(30)}
        assert ran <= started and len(executor._threads) == 12
    finally:
        executor.shutdown()


def _three_steps(team, last_delay_ms: int):
    record = lambda text: {"tool_calls": [{"name": "t__record", "arguments": {"text": text}}]}  # noqa: E731
    scripted(team, "a1", record("first"), {"text": "first done"})
    scripted(team, "a2", record("second"), {"text": "second done", "delay_ms": last_delay_ms})
    scripted(team, "a3", record("third"), {"text": "third done"})
    return pipeline(team, {"steps": [{"kind": "agent", "id": s, "agent": a, "prompt": s} for s, a in
                                     (("first", "a1"), ("second", "a2"), ("third", "a3"))]})


def _waiting_in_second(runs: list[Run]) -> bool:
    """Every run's second step made its tool call (durable) and waits on its last model call."""
    ids = [r.pk for r in runs]
    return Run.objects.filter(pk__in=ids, ledger__step_key="second", ledger__kind="tool").distinct().count() == len(ids)


def _assert_nothing_repeated(runs: list[Run], tmp_path: Path) -> None:
    for run in runs:
        run.refresh_from_db()
        assert run.status == "succeeded", run.error
        assert run.lease_owner == ""
        assert StepRun.objects.filter(run=run, status="succeeded").count() == 3
    calls = [json.loads(line)["text"] for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    n = len(runs)
    assert sorted(calls) == sorted(["first"] * n + ["second"] * n + ["third"] * n), "each tool call made exactly once"
    for step in ("first", "second", "third"):
        # each step: its tool-requesting turn and its final turn, each made once (the final turn of
        # `second` was in flight at the kill: not completed, made once by the survivor)
        per_run = [UsageRecord.objects.filter(run=run, step_key=step).count() for run in runs]
        assert per_run == [2] * n, (step, per_run)
    assert RunEvent.objects.filter(run__in=runs, type="step.succeeded", step_key="first").count() == n


def test_it_loses_none_of_many_runs_when_its_process_is_killed(team, broker, tmp_path):
    pipe = _three_steps(team, last_delay_ms=8000)
    runs = [start(pipe) for _ in range(20)]
    victim = _pool_worker(tmp_path, "victim")
    survivor = None
    try:
        for run in runs:
            _submit(broker, run)
        _wait(lambda: _waiting_in_second(runs), 90)
        held = Run.objects.filter(pk__in=[r.pk for r in runs], status="running",
                                  lease_owner__contains=f":{victim.pid}:").count()
        assert held == 20, "all 20 runs were in flight in the one process"
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)
        survivor = _pool_worker(tmp_path, "survivor")
        # the leases (2 s) run out; the stuck-runs sweep hands the runs to the surviving worker
        _wait(lambda: not Run.objects.filter(pk__in=[r.pk for r in runs], lease_until__gte=timezone.now()).exists(), 15)
        broker.send_task("orchestrator.tasks.requeue_stuck_runs_task")
        _wait(lambda: Run.objects.filter(pk__in=[r.pk for r in runs], status="succeeded").count() == 20, 120)
    finally:
        _stop(*(p for p in (victim, survivor) if p is not None))
    _assert_nothing_repeated(runs, tmp_path)
    assert _pids(runs, "run.resumed") == {str(survivor.pid)}
    assert RunEvent.objects.filter(run__in=runs, type="run.resumed").count() == 20


def test_it_hands_its_runs_back_at_once_when_it_shuts_down(team, broker, tmp_path):
    pipe = _three_steps(team, last_delay_ms=60000)  # far longer than the shutdown may take
    runs = [start(pipe) for _ in range(10)]
    long_lease = {"AGENTDECK_RUN_LEASE_S": "120"}  # only the hand-back can make the survivor fast
    first = _pool_worker(tmp_path, "first", **long_lease)
    second = None
    try:
        for run in runs:
            _submit(broker, run)
        _wait(lambda: _waiting_in_second(runs), 90)
        first.send_signal(signal.SIGTERM)  # warm shutdown with 10 runs waiting on a 60 s model call
        first.wait(timeout=30)  # it does not wait for them: it hands them back
        # the runs resume from their last persisted point: make their last model call quick now
        agent = Agent.objects.get(team=team, name="a2")
        agent.options["script"]["replies"][1]["delay_ms"] = 0
        agent.save()
        second = _pool_worker(tmp_path, "second", **long_lease)
        _wait(lambda: Run.objects.filter(pk__in=[r.pk for r in runs], status="succeeded").count() == 10, 60)
    finally:
        _stop(*(p for p in (first, second) if p is not None))
    _assert_nothing_repeated(runs, tmp_path)
    assert _pids(runs, "run.resumed") == {str(second.pid)}


def test_it_keeps_tracking_a_run_when_a_duplicate_of_its_message_arrives(team, settings):
    """A redelivered message (visibility timeout, the stuck-runs sweep) of a run this process
    executes finds it held; the real run stays in flight (a shutdown must still hand it back)."""
    settings.AGENTDECK_TOOLBOX = "tests.fakes.counting_tools.factory"
    scripted(team, "w", {"text": "ok", "delay_ms": 4000})
    run = start(pipeline(team, {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "go"}]}))
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(worker_pool.execute, run.pk)
        _wait(lambda: StepRun.objects.filter(run=run, key="a", status="running").exists(), 30)
        assert worker_pool.in_flight() == 1
        duplicate = worker_pool.execute(run.pk)
        assert duplicate.status is None and duplicate.held_lease is not None, "the duplicate found the run held"
        assert worker_pool.in_flight() == 1, "the real run is still tracked"
        assert first.result(timeout=60).status == "succeeded"
    assert worker_pool.in_flight() == 0


def test_a_release_by_an_earlier_owner_leaves_the_new_lease_kept(team, settings):
    """After a takeover in this process (the old lease ran out), the old execution's release
    must not stop the keeper renewing and watching the new execution's lease."""
    settings.RUN_LEASE_S = 3  # renewed every second
    scripted(team, "w", {"text": "ok"})
    run = start(pipeline(team, {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "go"}]}))
    soon = timezone.now() + timedelta(seconds=3)
    Run.objects.filter(pk=run.pk).update(status="running", lease_owner="new", lease_until=soon)

    async def takeover() -> tuple[int, bool, bool]:
        keeper = LeaseKeeper()
        keeper.hold(run.pk, "old")
        keeper.hold(run.pk, "new")  # the same run, taken over by a new execution here
        keeper.release(run.pk, "old")  # the old execution's `finally`
        kept = len(keeper), keeper.flagged(run.pk, "old"), keeper.flagged(run.pk, "new")
        await asyncio.sleep(2.5)  # the keeper renews the new lease meanwhile
        keeper.release(run.pk, "new")
        assert len(keeper) == 0
        return kept

    kept, old_flagged, new_flagged = async_to_sync(takeover)()
    assert kept == 1, "the new execution's lease is still kept"
    assert old_flagged and not new_flagged, "only the old execution is sent to look for itself"
    assert Run.objects.get(pk=run.pk).lease_until > soon, "the new lease was renewed"


def test_a_cancel_during_the_claim_hands_the_claimed_run_back(team, settings):
    """A shutdown that cancels a run while its claim is on the writer thread: the claim commits
    anyway, so the run is handed back at once instead of sitting out a lease nobody renews."""
    settings.AGENTDECK_TOOLBOX = "tests.fakes.counting_tools.factory"
    settings.RUN_LEASE_S = 120
    scripted(team, "w", {"text": "ok"})
    run = start(pipeline(team, {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "go"}]}))

    async def cancelled_while_claiming() -> None:
        task = asyncio.get_running_loop().create_task(execute_run(run.pk))
        await asyncio.sleep(0)  # it submitted its claim to a writer thread and waits for it
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    async_to_sync(cancelled_while_claiming)()
    _wait(lambda: Run.objects.filter(pk=run.pk, status="running").exclude(lease_owner="").exists(), 10)  # claimed
    run.refresh_from_db()
    assert run.lease_until <= timezone.now(), "and its lease handed back"
    outcome = async_to_sync(execute_run)(run.pk)  # so it is claimable again at once
    assert outcome is not None and outcome.status == "succeeded"


def test_a_warm_shutdown_lets_the_tool_calls_in_flight_end_first(team, broker, tmp_path):
    n = 4
    scripted(team, "a1", {"tool_calls": [{"name": "t__record", "arguments": {"text": "x"}}]}, {"text": "done"})
    pipe = pipeline(team, {"steps": [{"kind": "agent", "id": "s", "agent": "a1", "prompt": "go"}]})
    runs = [start(pipe) for _ in range(n)]
    env = {"AGENTDECK_RUN_LEASE_S": "120", "AGENTDECK_TOOLBOX": "tests.fakes.shutdown_grace_tools.factory",
           "AGENTDECK_TEST_TOOL_DELAY_S": "5"}
    log = tmp_path / "calls.jsonl"
    lines = lambda: [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []  # noqa: E731
    first = _pool_worker(tmp_path, "first", **env)
    second = None
    try:
        for run in runs:
            _submit(broker, run)
        _wait(lambda: sum(1 for line in lines() if line["event"] == "start") == n, 90)
        first.send_signal(signal.SIGTERM)  # warm shutdown, 4 tool calls at their upstream
        first.wait(timeout=40)
        second = _pool_worker(tmp_path, "second", **env)
        _wait(lambda: Run.objects.filter(pk__in=[r.pk for r in runs], status="succeeded").count() == n, 60)
    finally:
        _stop(*(p for p in (first, second) if p is not None))
    calls = lines()
    assert [c["event"] for c in calls].count("start") == n, "no call was cut off and made again"
    assert [c["event"] for c in calls].count("end") == n, "every call ran to its end"
    assert {c["pid"] for c in calls} == {first.pid}
    assert not RunEvent.objects.filter(run__in=runs, type="tool.interrupted").exists()


def test_a_run_that_reaches_a_tool_call_during_the_grace_is_handed_back_not_timed_out(team, broker, tmp_path):
    """A warm shutdown waits for one run's tool call at its upstream (8 s); another run reaches
    its tool call meanwhile. It used to wait at the closed gate inside its step's 4 s timeout,
    time out, and on its last attempt pause for a human; it is handed back at once, and its
    call is made once, when it resumes on the next worker."""
    call = {"tool_calls": [{"name": "t__record", "arguments": {"text": "x"}}]}
    scripted(team, "busy", call, {"text": "done"})
    scripted(team, "late", {**call, "delay_ms": 1500}, {"text": "done"})
    busy = start(pipeline(team, {"steps": [{"kind": "agent", "id": "s", "agent": "busy", "prompt": "go"}]}, name="busy"))
    late = start(pipeline(team, {"steps": [{"kind": "agent", "id": "s", "agent": "late", "prompt": "go", "timeout_s": 4,
                                            "retry": {"max_attempts": 1}}]}, name="late"))
    env = {"AGENTDECK_RUN_LEASE_S": "120", "AGENTDECK_TOOLBOX": "tests.fakes.shutdown_grace_tools.factory",
           "AGENTDECK_TEST_TOOL_DELAY_S": "8"}
    log = tmp_path / "calls.jsonl"
    lines = lambda: [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []  # noqa: E731
    first = _pool_worker(tmp_path, "first", **env)
    second = None
    try:
        _submit(broker, busy)
        _wait(lambda: any(line["event"] == "start" for line in lines()), 90)  # busy's call is at its upstream
        _submit(broker, late)
        _wait(lambda: Run.objects.filter(pk=late.pk, status="running").exists(), 30)
        first.send_signal(signal.SIGTERM)  # warm shutdown: the grace waits for busy's call
        first.wait(timeout=40)
        assert StepRun.objects.get(run=late).status == "running"  # not failed, not waiting for review
        second = _pool_worker(tmp_path, "second", **{**env, "AGENTDECK_TEST_TOOL_DELAY_S": "0"})
        _wait(lambda: Run.objects.filter(pk__in=[busy.pk, late.pk], status="succeeded").count() == 2, 60)
    finally:
        _stop(*(p for p in (first, second) if p is not None))
    late.refresh_from_db()
    assert not late.review_items.exists()
    assert StepRun.objects.get(run=late).attempt == 1  # the shutdown burnt no attempt
    starts = [c for c in lines() if c["event"] == "start"]
    assert len(starts) == 2 and len({c["pid"] for c in starts}) == 2  # each call made once: busy's on the first, late's on the second


# Found by an outside review (2026-12-07, worker pool and failures); failed before its fix.
def test_an_eval_holds_no_more_runs_in_a_worker_than_the_setting_allows(team, broker, tmp_path):
    """An eval task holds one pool thread but ran up to its suite's `concurrency` case runs at
    once on the shared loop: a worker sized for 2 runs held 6 (one eval task), or 64 with two
    evals of `concurrency: 32`. Its case runs now take the process's run places."""
    from orchestrator.evals.harness import do_create_eval_run
    from orchestrator.evals.suite_files import do_import_suite
    from orchestrator.models import EvalRun

    scripted(team, "slowpoke", {"text": "8", "delay_ms": 1500})
    cases = "".join(f'  - {{name: c{i}, input: {{prompt: "q{i}?"}}, expect: {{kind: exact, value: "8"}}}}\n'
                    for i in range(6))
    suite = do_import_suite(team, f"suite: wide\nname: Wide\ntarget: {{agent: slowpoke}}\nconcurrency: 6\ncases:\n{cases}")
    eval_run = do_create_eval_run(suite)
    worker = _pool_worker(tmp_path, "evals", AGENTDECK_RUNS_PER_WORKER="2")
    peak = 0
    try:
        broker.send_task("orchestrator.tasks.execute_eval_task", args=[eval_run.pk])
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            peak = max(peak, StepRun.objects.filter(status="running").count())
            if EvalRun.objects.get(pk=eval_run.pk).status not in ("queued", "running"):
                break
            time.sleep(0.05)
    finally:
        _stop(worker)
    assert EvalRun.objects.get(pk=eval_run.pk).status == "finished", (tmp_path / "evals.log").read_text()[-2000:]
    assert Run.objects.filter(status="succeeded").count() == 6, "every case ran"
    assert 1 <= peak <= 2, f"a worker of 2 runs held {peak} runs at once (one eval task)"

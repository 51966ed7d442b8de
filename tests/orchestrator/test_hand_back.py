"""Hand-back at every exit: when the process holding a run's lease dies on this host (a cold
shutdown, a killed prefork child), the redelivered task takes the run at once instead of
waiting for the lease to run out and the stuck-runs sweep."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from orchestrator.execution import host_identity, lease_holder_is_dead
from orchestrator.models import Run, RunEvent, StepRun
from tests.conftest import pipeline, scripted, start
from tests.orchestrator.test_celery import _submit, _wait, _worker_env, broker  # noqa: F401 - fixture

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

LONG_LEASE = {"AGENTDECK_RUN_LEASE_S": "120"}  # far longer than the test may wait: only the take-over can pass


def _worker(tmp: Path, name: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-n", f"{name}@%h", "-l", "warning", *args],
        cwd=settings.BASE_DIR, env={**_worker_env(tmp), **LONG_LEASE}, stdout=open(tmp / f"{name}.log", "w"),
        stderr=subprocess.STDOUT)


def _stop(*procs: subprocess.Popen) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _slow_run(team) -> Run:
    scripted(team, "a1", {"text": "first done"})
    scripted(team, "a2", {"text": "second done", "delay_ms": 12000})
    spec = {"steps": [{"kind": "agent", "id": "first", "agent": "a1", "prompt": "1"},
                      {"kind": "agent", "id": "second", "agent": "a2", "prompt": "2"}]}
    return start(pipeline(team, spec))


def _holder(run: Run) -> tuple[str, int]:
    """The lease owner once the slow step runs, and its pid."""
    _wait(lambda: StepRun.objects.filter(run=run, key="second", status="running").exists(), 60)
    owner = Run.objects.get(pk=run.pk).lease_owner
    return owner, int(owner.split(":")[1])


def _taken_over(run: Run, old_owner: str) -> bool:
    return Run.objects.filter(pk=run.pk).exclude(lease_owner__in=[old_owner, ""]).exists()


def test_it_knows_a_dead_holder_on_this_host():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    import socket

    here = host_identity()
    assert lease_holder_is_dead(f"{here}:{proc.pid}:abc:12")
    assert not lease_holder_is_dead(f"{here}:{os.getppid()}:abc:12")
    assert not lease_holder_is_dead(f"other-host@1:{proc.pid}:abc:12")
    assert not lease_holder_is_dead(f"{here}:{os.getpid()}:abc:12")
    # Same hostname, another PID namespace (a container sharing the host's name): not ours to judge.
    assert not lease_holder_is_dead(f"{socket.gethostname()}@1:{proc.pid}:abc:12")


def test_it_resumes_at_once_after_a_cold_shutdown(team, broker, tmp_path):  # noqa: F811
    run = _slow_run(team)
    first = _worker(tmp_path, "w0", "--pool=prefork", "--concurrency=1")
    second = None
    try:
        _submit(broker, run)
        owner, pid = _holder(run)
        assert pid != first.pid  # a child of w0 holds it
        second = _worker(tmp_path, "w1", "--pool=solo")
        time.sleep(3)  # w1 is up and consuming
        first.send_signal(signal.SIGQUIT)  # cold shutdown: the task is restored, no hand-back code runs
        first.wait(timeout=15)
        killed_at = time.monotonic()
        _wait(lambda: _taken_over(run, owner), 60)
        took = time.monotonic() - killed_at
        _wait(lambda: Run.objects.get(pk=run.pk).is_finished, 60)
    finally:
        _stop(*(p for p in (first, second) if p is not None))
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert RunEvent.objects.filter(run=run, type="run.resumed").count() == 1
    # Without the take-over it would wait for the 120 s lease; quiet, it takes 2-4 s (CI under load: up to ~5 s).
    assert took < 10, f"resumed {took:.1f}s after the cold shutdown"


def test_it_resumes_at_once_after_a_prefork_child_is_killed(team, broker, tmp_path):  # noqa: F811
    run = _slow_run(team)
    worker = _worker(tmp_path, "w0", "--pool=prefork", "--concurrency=1")
    try:
        _submit(broker, run)
        owner, child = _holder(run)
        assert child != worker.pid
        os.kill(child, signal.SIGKILL)
        killed_at = time.monotonic()
        _wait(lambda: _taken_over(run, owner), 60)
        took = time.monotonic() - killed_at
        _wait(lambda: Run.objects.get(pk=run.pk).is_finished, 60)
    finally:
        _stop(worker)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert RunEvent.objects.filter(run=run, type="run.resumed").count() == 1
    assert took < 10, f"resumed {took:.1f}s after the child was killed (the lease is 120 s)"


def test_a_cold_shutdown_of_the_shipped_threads_pool_hands_its_runs_back_and_exits(team, broker, tmp_path):  # noqa: F811
    """SIGQUIT to a worker as shipped (many runs on one loop, threads pool): Celery cancels the
    active requests through the pool's `terminate_job`, which Celery's threads pool lacks
    (NotImplementedError killed the consumer and the worker hung). Every run's lease is given
    back at once, the worker exits, and another worker finishes the runs."""
    scripted(team, "slow", {"text": "done", "delay_ms": 12_000})
    runs = [start(pipeline(team, {"steps": [{"kind": "agent", "id": "a", "agent": "slow", "prompt": "go"}]}, name=f"c{i}"))
            for i in range(3)]
    first = _worker(tmp_path, "w0")  # the shipped pool: config.celery's defaults
    second = None
    try:
        for run in runs:
            _submit(broker, run)
        _wait(lambda: Run.objects.filter(pk__in=[r.pk for r in runs], status="running").exclude(lease_owner="").count() == 3, 60)
        time.sleep(1)
        first.send_signal(signal.SIGQUIT)
        first.wait(timeout=20)  # it exits (it hung before)
        handed_back = Run.objects.filter(pk__in=[r.pk for r in runs], lease_until__lte=timezone.now())
        assert handed_back.count() == 3  # each lease given back (ended now), not left to run out
        second = _worker(tmp_path, "w1", "--pool=solo")
        _wait(lambda: all(r.is_finished for r in Run.objects.filter(pk__in=[r.pk for r in runs])), 120)
    finally:
        _stop(*(p for p in (first, second) if p is not None))
    assert [r.status for r in Run.objects.filter(pk__in=[r.pk for r in runs])] == ["succeeded"] * 3
    log = (tmp_path / "w0.log").read_text()
    assert "Unrecoverable error" not in log and "NotImplementedError" not in log, log[-3000:]


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGQUIT"])
def test_a_shutdown_hands_an_eval_run_back_and_exits(team, broker, tmp_path, sig):  # noqa: F811
    """An eval run ran on a loop of its own in a pool thread, which no shutdown reached: a warm
    or a cold shutdown waited for the whole eval (found by a review: still up 25 s after the
    signal, with a 60 s case). It now runs on the shared loop like a run: its case run and its
    own lease are handed back, the worker exits, and another worker finishes the eval."""
    from orchestrator.evals.harness import do_create_eval_run
    from orchestrator.evals.suite_files import do_import_suite
    from orchestrator.models import EvalRun

    scripted(team, "slowpoke", {"text": "8", "delay_ms": 60_000})
    suite = do_import_suite(team, "suite: slow\nname: Slow\ntarget: {agent: slowpoke}\ncases:\n"
                                  '  - {name: slow, input: {prompt: "slow?"}, expect: {kind: exact, value: "8"}}\n')
    eval_run = do_create_eval_run(suite)
    first = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-n", "w0@%h", "-l", "warning"],
        cwd=settings.BASE_DIR, env={**_worker_env(tmp_path), **LONG_LEASE, "AGENTDECK_SHUTDOWN_GRACE_S": "2"},
        stdout=open(tmp_path / "w0.log", "w"), stderr=subprocess.STDOUT)
    try:
        broker.send_task("orchestrator.tasks.execute_eval_task", args=[eval_run.pk])
        _wait(lambda: StepRun.objects.filter(status="running").exists(), 90)  # the case's model call waits
        time.sleep(1)
        first.send_signal(getattr(signal, sig))
        first.wait(timeout=20)  # it exits (it waited for the 60 s case before)
    finally:
        _stop(first)
    assert EvalRun.objects.filter(pk=eval_run.pk, finished_at__lte=timezone.now()).exists()  # its lease let go
    case_run = Run.objects.get(pipeline_version__pipeline__internal=True, pipeline_version__pipeline__team=team)
    assert case_run.lease_until is not None and case_run.lease_until <= timezone.now()

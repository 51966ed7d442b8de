"""An eval run whose process dies resumes: finished cases are kept, the case in flight
continues its own run, the rest run; every case runs once and the totals are right.

The first test runs `manage.py eval run` in a subprocess, kills it with SIGKILL while the
second case waits on its model, then resumes with `manage.py eval resume` here.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from orchestrator.evals.harness import do_create_eval_run
from orchestrator.evals.resume import CASE_EVENT, claim_eval_run, held_until, stuck_eval_runs
from orchestrator.evals.suite_files import do_import_suite
from orchestrator.models import Agent, EvalResult, EvalRun, Run, RunEvent, StepRun, UsageRecord
from tests.conftest import database_env, scripted

pytestmark = pytest.mark.django_db(transaction=True)

SUITE = """
suite: arith
name: Arithmetic
target: {agent: adder}
concurrency: 1
cases:
  - {name: first, input: {prompt: "2+3?"}, expect: {kind: exact, value: "5"}}
  - {name: slow, input: {prompt: "slow 4+4?"}, expect: {kind: exact, value: "8"}}
  - {name: last, input: {prompt: "1+1?"}, expect: {kind: exact, value: "2"}}
"""


def _adder(team, slow_ms: int):
    return scripted(team, "adder", {"text": "?"}, rules=[
        {"if_contains": "2+3", "replies": [{"text": "5"}]},
        {"if_contains": "slow", "replies": [{"text": "8", "delay_ms": slow_ms}]},
        {"if_contains": "1+1", "replies": [{"text": "2"}]},
    ])


def _wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def _case_runs(eval_run: EvalRun) -> dict[str, list[int]]:
    runs: dict[str, list[int]] = {}
    for run_id, data in RunEvent.objects.filter(type=CASE_EVENT).values_list("run_id", "data"):
        if data["eval_run"] == eval_run.pk:
            runs.setdefault(data["name"], []).append(run_id)
    return runs


@pytest.mark.slow
def test_it_resumes_an_eval_run_whose_process_was_killed(team, gateway_runtime, tmp_path):
    _adder(team, slow_ms=60_000)
    do_import_suite(team, SUITE)
    env = {**os.environ, **database_env(), "AGENTDECK_RUN_LEASE_S": "2", "AGENTDECK_RUNNER": "inline"}
    log = open(tmp_path / "eval.log", "w")
    proc = subprocess.Popen([sys.executable, "manage.py", "eval", "run", "arith", "--team", team.slug],
                            cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: EvalResult.objects.filter(case__name="first").exists()
                  and StepRun.objects.filter(run__input__prompt="slow 4+4?", status="running").exists())
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    eval_run = EvalRun.objects.get()
    assert eval_run.status == "running" and eval_run.case_done == 1, (tmp_path / "eval.log").read_text()
    slow_run = Run.objects.get(pk=_case_runs(eval_run)["slow"][0])
    assert slow_run.status == "running"
    variant = Agent.objects.get(team=team, name=f"adder--eval{eval_run.pk}")
    variant.options["script"]["rules"][1]["replies"][0]["delay_ms"] = 0  # the model answers quickly now
    variant.save()
    _wait_for(lambda: held_until(eval_run.pk) is None, timeout=10)  # the dead process's lease runs out

    out = io.StringIO()
    call_command("eval", "resume", str(eval_run.pk), stdout=out)

    eval_run.refresh_from_db()
    assert eval_run.status == "finished", out.getvalue()
    assert (eval_run.case_total, eval_run.case_done) == (3, 3)
    assert eval_run.metrics["completion"] == {**eval_run.metrics["completion"], "completed": 3, "total": 3}
    assert sorted(EvalResult.objects.filter(eval_run=eval_run).values_list("case__name", "status")) == [
        ("first", "passed"), ("last", "passed"), ("slow", "passed")]
    runs = _case_runs(eval_run)
    assert {name: len(ids) for name, ids in runs.items()} == {"first": 1, "slow": 1, "last": 1}
    assert runs["slow"] == [slow_run.pk], "the case in flight continued its own run"
    assert set(Run.objects.filter(pk__in=[i for ids in runs.values() for i in ids]).values_list("status", flat=True)) == {"succeeded"}
    # The first case's run finished before the kill and was not run again: one model call each.
    assert Counter(UsageRecord.objects.filter(run_id__in=[ids[0] for ids in runs.values()]).values_list("run_id", flat=True)) \
        == {runs["first"][0]: 1, runs["slow"][0]: 1, runs["last"][0]: 1}
    assert "resumed and finished" in out.getvalue()


def test_it_does_not_resume_an_eval_run_a_live_process_holds(team):
    _adder(team, slow_ms=0)
    eval_run = do_create_eval_run(do_import_suite(team, SUITE))
    assert claim_eval_run(eval_run.pk) is not None  # a live process runs it

    with pytest.raises(CommandError, match=f"eval run {eval_run.pk} is held by a live process"):
        call_command("eval", "resume", str(eval_run.pk), stdout=io.StringIO())
    assert claim_eval_run(eval_run.pk) is None
    assert not stuck_eval_runs().exists()


def test_it_counts_an_eval_run_whose_lease_ran_out_as_stuck(team):
    _adder(team, slow_ms=0)
    eval_run = do_create_eval_run(do_import_suite(team, SUITE))
    claim_eval_run(eval_run.pk)
    EvalRun.objects.filter(pk=eval_run.pk).update(finished_at=timezone.now() - timedelta(seconds=1))

    assert list(stuck_eval_runs()) == [eval_run]
    assert claim_eval_run(eval_run.pk) is not None
    assert not stuck_eval_runs().exists()


def test_it_finishes_a_fresh_eval_run_with_its_lease_released(team, gateway_runtime):
    _adder(team, slow_ms=0)
    eval_run = do_create_eval_run(do_import_suite(team, SUITE))
    from asgiref.sync import async_to_sync

    from orchestrator.evals.harness import execute_eval_run

    finished = async_to_sync(execute_eval_run)(eval_run.pk)

    assert finished.status == "finished" and finished.case_done == 3 and finished.finished_at <= timezone.now()
    assert not stuck_eval_runs().exists() and claim_eval_run(eval_run.pk) is None

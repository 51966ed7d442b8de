"""Parallel branches run at the same time; a failing branch does not take its siblings down."""

from __future__ import annotations

import time

import pytest

from orchestrator.models import RunEvent, StepRun
from tests.conftest import run_spec, scripted

pytestmark = pytest.mark.django_db(transaction=True)


def _fan_out(join: bool = True, policy: str = "continue") -> dict:
    spec = {
        "steps": [{
            "kind": "parallel", "id": "fan", "on_branch_failure": policy,
            "branches": [{"kind": "agent", "id": f"b{i}", "agent": f"slow{i}", "prompt": f"branch {i}"} for i in range(4)],
        }],
    }
    if join:
        spec["steps"][0]["join"] = {"kind": "agent", "id": "join", "agent": "joiner",
                                    "prompt": "b0={{ steps.b0.output }} b1={{ steps.b1.output }} b2err={{ steps.b2.error }}"}
    return spec


def test_it_overlaps_four_branches_of_300_ms(team):
    for i in range(4):
        scripted(team, f"slow{i}", {"text": f"out{i}", "delay_ms": 300})
    scripted(team, "joiner", {"text": "{{prompt}}"})

    started = time.perf_counter()
    run = run_spec(team, _fan_out())
    elapsed = time.perf_counter() - started

    assert run.status == "succeeded", run.error
    assert elapsed < 1.2, f"4 x 300 ms branches took {elapsed:.2f}s"
    steps = {s.key: s for s in StepRun.objects.filter(run=run, key__startswith="b")}
    latest_start = max(s.started_at for s in steps.values())
    earliest_end = min(s.finished_at for s in steps.values())
    assert latest_start < earliest_end, "every branch started before the first one finished"
    assert run.output["result"] == "b0=out0 b1=out1 b2err="


def test_it_gives_the_join_the_failed_branch_as_data(team):
    for i in (0, 1, 3):
        scripted(team, f"slow{i}", {"text": f"out{i}", "delay_ms": 50})
    scripted(team, "slow2", {"error": "upstream model exploded", "retryable": False})
    scripted(team, "joiner", {"text": "{{prompt}}"})

    run = run_spec(team, _fan_out())

    assert run.status == "succeeded", run.error
    assert run.output["result"] == "b0=out0 b1=out1 b2err=upstream model exploded"
    statuses = dict(StepRun.objects.filter(run=run, key__startswith="b").values_list("key", "status"))
    assert statuses == {"b0": "succeeded", "b1": "succeeded", "b2": "failed", "b3": "succeeded"}


def test_it_pauses_for_review_when_the_branch_policy_says_so(team):
    for i in (0, 1, 3):
        scripted(team, f"slow{i}", {"text": f"out{i}"})
    scripted(team, "slow2", {"error": "boom", "retryable": False})

    run = run_spec(team, _fan_out(join=False, policy="review"))

    assert run.status == "waiting_review"
    item = run.review_items.get()
    assert item.step_key == "fan" and item.reason == "failure"
    assert item.context["failed_branches"] == {"b2": "boom"}
    # siblings finished anyway
    assert StepRun.objects.filter(run=run, key__in=["b0", "b1", "b3"], status="succeeded").count() == 3


def test_it_fails_the_run_when_the_branch_policy_says_so(team):
    for i in (0, 1, 3):
        scripted(team, f"slow{i}", {"text": f"out{i}"})
    scripted(team, "slow2", {"error": "boom", "retryable": False})

    run = run_spec(team, _fan_out(join=False, policy="fail"))

    assert run.status == "failed"
    assert "b2: boom" in run.error
    assert RunEvent.objects.filter(run=run, type="run.failed").count() == 1

"""Loops exit on their condition or their maximum; branches take the arm their condition picks."""

from __future__ import annotations

import pytest

from orchestrator.models import RunEvent, StepRun
from tests.conftest import run_spec, scripted

pytestmark = pytest.mark.django_db(transaction=True)

LOOP = {
    "steps": [{
        "kind": "loop", "id": "fix", "max_iterations": 3,
        "until": {"ref": "steps.reviewer.output", "op": "not_contains", "value": "needs changes"},
        "body": [
            {"kind": "agent", "id": "coder", "agent": "coder", "prompt": "review so far: {{ steps.reviewer.output }}"},
            {"kind": "agent", "id": "reviewer", "agent": "reviewer", "prompt": "check: {{ steps.coder.output }}"},
        ],
    }],
}


def _exit_event(run):
    return RunEvent.objects.get(run=run, type="loop.exited").data


def test_it_exits_the_loop_when_the_condition_holds(team):
    scripted(team, "coder", {"text": "v1"}, rules=[{"if_contains": "needs changes", "replies": [{"text": "v2"}]}])
    scripted(team, "reviewer", {"text": "approved"}, rules=[{"if_contains": "v1", "replies": [{"text": "needs changes"}]}])

    run = run_spec(team, LOOP)

    assert run.status == "succeeded"
    assert run.output == {"result": "approved"}
    assert _exit_event(run) == {"step_id": "fix", "reason": "condition", "iterations": 2}
    assert StepRun.objects.filter(run=run, step_id="coder").count() == 2


def test_it_exits_the_loop_at_its_maximum(team):
    scripted(team, "coder", {"text": "v1"})
    scripted(team, "reviewer", {"text": "needs changes, always"})

    run = run_spec(team, LOOP)

    assert run.status == "succeeded"
    assert _exit_event(run) == {"step_id": "fix", "reason": "max_iterations", "iterations": 3}
    keys = set(StepRun.objects.filter(run=run, kind="agent").values_list("key", flat=True))
    assert keys == {"coder#1", "reviewer#1", "coder#2", "reviewer#2", "coder#3", "reviewer#3"}


def test_it_can_fail_the_run_at_the_loop_maximum(team):
    scripted(team, "coder", {"text": "v1"})
    scripted(team, "reviewer", {"text": "needs changes"})
    spec = {"steps": [{**LOOP["steps"][0], "max_iterations": 2, "on_max": "fail"}]}

    run = run_spec(team, spec)

    assert run.status == "failed"
    assert "after 2 iterations" in run.error


@pytest.mark.parametrize(("score", "arm"), [("high", "then"), ("low", "else")])
def test_it_takes_the_branch_its_condition_picks(team, score, arm):
    scripted(team, "rater", {"text": f"risk: {score}"})
    scripted(team, "escalate", {"text": "escalated"})
    scripted(team, "approve", {"text": "auto-approved"})
    spec = {"steps": [
        {"kind": "agent", "id": "rate", "agent": "rater", "prompt": "rate it"},
        {"kind": "branch", "id": "route", "if": {"ref": "steps.rate.output", "op": "matches", "value": "risk: (high|critical)"},
         "then": [{"kind": "agent", "id": "esc", "agent": "escalate", "prompt": "{{ steps.rate.output }}"}],
         "else": [{"kind": "agent", "id": "ok", "agent": "approve", "prompt": "{{ steps.rate.output }}"}]},
    ]}

    run = run_spec(team, spec)

    assert run.status == "succeeded"
    assert run.output["result"] == ("escalated" if arm == "then" else "auto-approved")
    assert RunEvent.objects.get(run=run, type="branch.taken").data["taken"] == arm

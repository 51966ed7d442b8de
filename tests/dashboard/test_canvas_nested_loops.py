"""The run page's diagram shows a step's latest instance by its loop iterations, outermost
first: the last number alone ranked `g#1#2` above `g#2#1`, so a gate waiting in the outer
loop's second iteration showed as the approved one of the first (found by a review)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from dashboard.runs.canvas import node_states
from dashboard.runs.tree import build_run_tree
from orchestrator.actions import do_decide_review
from tests.conftest import execute, run_spec, scripted

pytestmark = pytest.mark.django_db(transaction=True)


def test_run_canvas_shows_latest_instance_of_a_step_in_nested_loops(team, owner):
    """Outer loop iteration 2 pauses at a review gate inside the inner loop; the canvas node of
    that gate must show the waiting instance (g#2#1), not the approved one from iteration 1 (g#1#2)."""
    scripted(team, "w", {"text": "out"})
    spec = {"steps": [
        {"kind": "loop", "id": "outer", "max_iterations": 2,
         "until": {"ref": "steps.a.output", "op": "contains", "value": "never"},
         "body": [
             {"kind": "loop", "id": "inner", "max_iterations": 2,
              "until": {"ref": "steps.a.output", "op": "contains", "value": "never"},
              "body": [
                  {"kind": "agent", "id": "a", "agent": "w", "prompt": "go"},
                  {"kind": "review", "id": "g", "instructions": "ok?"},
              ]},
         ]},
    ]}
    run = run_spec(team, spec)
    # approve gates until we reach outer iteration 2, inner iteration 1
    for _ in range(2):
        assert run.status == "waiting_review"
        item = run.review_items.filter(status="pending").get()
        do_decide_review(item, owner, "approve", submit=False)
        run = execute(run)
    assert run.status == "waiting_review"
    pending = run.review_items.filter(status="pending").get()
    assert pending.step_key == "g#2#1"
    states = node_states(build_run_tree(run), timezone.now())
    assert states["g"]["key"] == "g#2#1" and states["g"]["status"] == "waiting", states["g"]

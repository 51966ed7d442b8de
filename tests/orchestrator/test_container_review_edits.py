"""A reviewer's edited output for a loop (`on_max: review`) or a parallel step
(`on_branch_failure: review`) is the step's output — it was accepted, stored and ignored
(found by a review); a parallel step with a join refuses one, since its join reads the branches."""
from __future__ import annotations

import pytest

from orchestrator.actions import do_decide_review
from orchestrator.models import StepRun
from tests.conftest import execute, run_spec, scripted

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_loops_edited_output_is_what_the_next_step_reads(team, owner):
    scripted(team, "w", {"text": "draft"})
    scripted(team, "after", {"text": "{{prompt}}"})
    spec = {"steps": [
        {"kind": "loop", "id": "fix", "max_iterations": 1, "on_max": "review",
         "until": {"ref": "steps.a.output", "op": "contains", "value": "never"},
         "body": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "go"}]},
        {"kind": "agent", "id": "next", "agent": "after", "prompt": "got: {{ steps.fix.output }}"},
    ]}
    run = run_spec(team, spec)
    assert run.status == "waiting_review"
    item = run.review_items.get()
    assert item.context["kind"] == "loop"
    decided = do_decide_review(item, owner, "approve", output="EDITED BY REVIEWER", submit=False)
    assert decided.decision["output"] == "EDITED BY REVIEWER"   # accepted and stored
    run = execute(run)
    assert run.status == "succeeded"
    prompt = StepRun.objects.get(run=run, key="next").input["prompt"]
    fix_out = StepRun.objects.get(run=run, key="fix").output
    assert prompt == "got: EDITED BY REVIEWER", f"edit dropped: next step saw {prompt!r}, loop output {fix_out!r}"


def test_a_parallel_steps_edited_output_is_what_the_next_step_reads(team, owner):
    scripted(team, "ok", {"text": "fine"})
    scripted(team, "bad", {"error": "boom", "retryable": False})
    scripted(team, "after", {"text": "{{prompt}}"})
    spec = {"steps": [
        {"kind": "parallel", "id": "par", "on_branch_failure": "review",
         "branches": [{"kind": "agent", "id": "x", "agent": "ok", "prompt": "x"},
                      {"kind": "agent", "id": "y", "agent": "bad", "prompt": "y"}]},
        {"kind": "agent", "id": "next", "agent": "after", "prompt": "got: {{ steps.par.output }}"},
    ]}
    run = run_spec(team, spec)
    assert run.status == "waiting_review", run.error
    item = run.review_items.get()
    do_decide_review(item, owner, "approve", output={"x": "fine", "y": "REVIEWER FILLED IN"}, submit=False)
    run = execute(run)
    prompt = StepRun.objects.get(run=run, key="next").input["prompt"]
    assert "REVIEWER FILLED IN" in prompt, f"edit dropped: {prompt!r}"


def test_a_parallel_step_with_a_join_refuses_an_edited_output(team, owner):
    from orchestrator.actions.errors import ActionError

    scripted(team, "ok", {"text": "fine"})
    scripted(team, "bad", {"error": "boom", "retryable": False})
    spec = {"steps": [{"kind": "parallel", "id": "par", "on_branch_failure": "review",
                       "branches": [{"kind": "agent", "id": "x", "agent": "ok", "prompt": "x"},
                                    {"kind": "agent", "id": "y", "agent": "bad", "prompt": "y"}],
                       "join": {"kind": "agent", "id": "j", "agent": "ok", "prompt": "{{ steps.x.output }}"}}]}
    run = run_spec(team, spec)
    item = run.review_items.get()
    with pytest.raises(ActionError, match="join step 'j'"):
        do_decide_review(item, owner, "approve", output="ignored", submit=False)
    do_decide_review(item, owner, "approve", submit=False)
    assert execute(run).status == "succeeded"


def test_a_branch_inside_a_loop_cannot_read_its_sibling():
    """README: branches never see each other. Inside a loop body every body step was visible
    (its previous iteration's output), sibling branches included, and at run time a branch read
    whatever its sibling had written so far in the same iteration (found by a review)."""
    from orchestrator.engine.errors import SpecError
    from orchestrator.engine.spec import parse_spec

    par = {"kind": "parallel", "id": "par", "branches": [
        {"kind": "sequence", "id": "left", "steps": [
            {"kind": "agent", "id": "a1", "agent": "w", "prompt": "a1"},
            {"kind": "agent", "id": "a2", "agent": "w", "prompt": "sibling says: {{ steps.b.output }}"}]},
        {"kind": "agent", "id": "b", "agent": "w", "prompt": "b {{ steps.a1.output }}"}]}
    for steps in ([par], [{"kind": "loop", "id": "l", "max_iterations": 2, "until": {"ref": "steps.b.output", "op": "truthy"},
                           "body": [par]}]):
        with pytest.raises(SpecError) as refused:
            parse_spec({"steps": steps}, agent_names={"w"})
        paths = sorted(e["path"] for e in refused.value.errors)
        assert len(paths) == 2 and all(p.endswith(".prompt") for p in paths), refused.value.errors
    # Its own branch's earlier step, and the loop's other steps, stay visible.
    ok = {"kind": "loop", "id": "l", "max_iterations": 2, "until": {"ref": "steps.b.output", "op": "truthy"}, "body": [
        {"kind": "agent", "id": "first", "agent": "w", "prompt": "again: {{ steps.par.output }}"},
        {"kind": "parallel", "id": "par", "branches": [
            {"kind": "sequence", "id": "left", "steps": [
                {"kind": "agent", "id": "a1", "agent": "w", "prompt": "{{ steps.first.output }}"},
                {"kind": "agent", "id": "a2", "agent": "w", "prompt": "{{ steps.a1.output }}"}]},
            {"kind": "agent", "id": "b", "agent": "w", "prompt": "{{ steps.first.output }}"}]}]}
    parse_spec({"steps": [ok]}, agent_names={"w"})

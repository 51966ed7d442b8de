"""Forking a run from a step: earlier results are reused (no model or tool call repeated),
an edited output at that step is what the later steps see, and the new run says where it
came from."""

from __future__ import annotations

import sys

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings

from mcpgateway.actions.access import do_grant
from mcpgateway.actions.servers import do_save_server
from mcpgateway.models import AuditEntry
from orchestrator.actions.errors import ActionError, Conflict
from orchestrator.actions.fork import check_fork, do_fork_run
from orchestrator.execution import execute_run
from orchestrator.models import LedgerEntry, Run, RunEvent, StepRun, UsageRecord
from tests.conftest import execute, pipeline, run_spec, scripted, start, start_servers

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = str(settings.BASE_DIR)
SPEC = {"steps": [
    {"kind": "agent", "id": "first", "agent": "worker", "prompt": "first: call the tool"},
    {"kind": "agent", "id": "second", "agent": "worker", "prompt": "second after {{ steps.first.output }}"},
    {"kind": "agent", "id": "third", "agent": "worker", "prompt": "third sees [{{ steps.second.output }}]"},
]}


def through_gateway(run: Run) -> Run:
    async_to_sync(execute_run)(run.pk)  # the default toolbox: the real gateway
    run.refresh_from_db()
    return run


@pytest.fixture
def three_steps(team, gateway_runtime, owner):
    """A finished 3-step run whose every step calls a real gateway tool, then answers."""
    server = do_save_server(team.pk, "echo", transport="stdio", command=sys.executable,
                            args=["-m", "tests.fakes.mcp_echo_server"], cwd=ROOT, operator=True)
    do_grant(server, agent="worker", tool=None)
    start_servers(gateway_runtime, server)
    scripted(team, "worker",
             {"tool_calls": [{"name": "echo__echo", "arguments": {"message": "tool ran"}}]},
             {"text": "answer to <{{prompt}}>"})
    run = through_gateway(start(pipeline(team, SPEC)))
    assert run.status == "succeeded", run.error
    return run


def test_it_reuses_earlier_steps_and_later_steps_see_the_edited_output(three_steps, owner):
    source = three_steps
    assert AuditEntry.objects.filter(run_id=source.pk).count() == 3

    fork = do_fork_run(source, "second", edited_output="EDITED BY HAND", user=owner, submit=False)
    fork = through_gateway(Run.objects.get(pk=fork.pk))

    assert fork.status == "succeeded", fork.error
    assert fork.pipeline_version_id == source.pipeline_version_id and fork.input == source.input
    # no model or tool call before (or at) the chosen step: only `third` called anything
    assert set(UsageRecord.objects.filter(run=fork).values_list("step_key", flat=True)) == {"third"}
    assert list(AuditEntry.objects.filter(run_id=fork.pk).values_list("step_key", flat=True)) == ["third"]
    steps = {s.key: s for s in StepRun.objects.filter(run=fork)}
    assert steps["first"].output == StepRun.objects.get(run=source, key="first").output
    assert steps["second"].output == "EDITED BY HAND"
    assert "third sees [EDITED BY HAND]" in steps["third"].output
    assert "third sees [EDITED BY HAND]" in fork.output["result"]
    # the reused step's ledger came along; the edited one has none
    assert LedgerEntry.objects.filter(run=fork, step_key="first").count() == \
        LedgerEntry.objects.filter(run=source, step_key="first").count() > 0
    assert not LedgerEntry.objects.filter(run=fork, step_key="second").exists()
    forked = RunEvent.objects.get(run=fork, type="run.forked")
    assert forked.data["source_run"] == source.pk and forked.data["step"] == "second"
    assert forked.data["reused_steps"] == ["first"] and forked.data["edited"] is True
    assert RunEvent.objects.filter(run=fork, type="step.reused", step_key="first").count() == 1


def test_it_runs_the_chosen_step_again_without_an_edit(three_steps, owner):
    fork = through_gateway(do_fork_run(three_steps, "second", user=owner, submit=False))

    assert fork.status == "succeeded", fork.error
    assert sorted(UsageRecord.objects.filter(run=fork).values_list("step_key", flat=True)) == \
        ["second", "second", "third", "third"]
    assert sorted(AuditEntry.objects.filter(run_id=fork.pk).values_list("step_key", flat=True)) == ["second", "third"]


def test_it_refuses_to_fork_a_run_that_is_still_going(team, owner):
    scripted(team, "worker", {"text": "x"})
    queued = start(pipeline(team, SPEC))
    with pytest.raises(Conflict, match="still queued"):
        do_fork_run(queued, "second", user=owner, submit=False)


def test_it_refuses_a_step_that_did_not_run_and_an_edit_of_a_container(team, owner):
    scripted(team, "worker", {"text": "x"})
    spec = {"steps": [{"kind": "sequence", "id": "seq", "steps": [
        {"kind": "agent", "id": "a", "agent": "worker", "prompt": "a"},
        {"kind": "agent", "id": "b", "agent": "worker", "prompt": "b"}]}]}
    run = run_spec(team, spec)
    with pytest.raises(ActionError, match="did not run"):
        do_fork_run(run, "nope", user=owner, submit=False)
    with pytest.raises(ActionError, match="sequence step"):
        do_fork_run(run, "seq", edited_output="x", user=owner, submit=False)
    _, reused, _ = check_fork(run, "b")
    assert reused == ["a"]  # inside the sequence: the earlier sibling, not the container


def test_it_reuses_other_parallel_branches_and_earlier_loop_iterations(team, owner):
    scripted(team, "worker", {"text": "ok"})
    scripted(team, "judge", {"text": "not yet"})
    spec = {"steps": [
        {"kind": "agent", "id": "plan", "agent": "worker", "prompt": "plan"},
        {"kind": "parallel", "id": "fan", "branches": [
            {"kind": "agent", "id": "left", "agent": "worker", "prompt": "l"},
            {"kind": "agent", "id": "right", "agent": "worker", "prompt": "r"}],
         "join": {"kind": "agent", "id": "merge", "agent": "worker", "prompt": "m"}},
        {"kind": "loop", "id": "fix", "max_iterations": 3, "on_max": "continue",
         "until": {"ref": "steps.check.output", "op": "contains", "value": "done"},
         "body": [{"kind": "agent", "id": "code", "agent": "worker", "prompt": "c"},
                  {"kind": "agent", "id": "check", "agent": "judge", "prompt": "j"}]},
    ]}
    run = run_spec(team, spec)
    assert run.status == "succeeded", run.error

    _, reused, _ = check_fork(run, "right")
    assert reused == ["plan", "left"]
    _, reused, _ = check_fork(run, "merge")
    assert reused == ["plan", "left", "right"]
    _, reused, _ = check_fork(run, "check#2")
    assert reused == ["plan", "fan", "left", "right", "merge", "code#1", "check#1", "code#2"]

    fork = execute(do_fork_run(run, "check#2", edited_output="done", user=owner, submit=False))
    assert fork.status == "succeeded", fork.error
    assert set(UsageRecord.objects.filter(run=fork).values_list("step_key", flat=True)) == set()
    assert not StepRun.objects.filter(run=fork, key="code#3").exists()  # the edit ended the loop
    iterations = RunEvent.objects.filter(run=fork, type="loop.iteration").values_list("data__iteration", flat=True)
    assert sorted(iterations) == [1, 2]


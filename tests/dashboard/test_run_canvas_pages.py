"""The run page's diagram states, step panel, timeline, run again and fork; and the run-page
defects: a stopped model turn that kept saying "streaming…", a resume after a budget stop
that only paused again, a cancel without confirmation, eval runs flooding the runs list."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from mcpgateway.models import AuditEntry
from orchestrator.actions import do_create_team, do_decide_review, do_start_run
from orchestrator.actions.errors import Conflict
from orchestrator.models import (
    EvalCase,
    EvalResult,
    EvalRun,
    EvalSuite,
    Run,
    RunEvent,
    RunStatus,
    StepRun,
)
from tests.conftest import counting_toolbox, execute, pipeline, scripted, start

pytestmark = pytest.mark.django_db(transaction=True)

THREE = {"steps": [{"kind": "agent", "id": "one", "agent": "w", "prompt": "one"},
                   {"kind": "agent", "id": "two", "agent": "w", "prompt": "two"},
                   {"kind": "agent", "id": "three", "agent": "w", "prompt": "three sees {{ steps.two.output }}"}]}


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def no_submit(monkeypatch):
    from orchestrator.runners.inline import InlineRunner

    monkeypatch.setattr(InlineRunner, "submit", lambda self, run_id: None)


def budget_stopped(team) -> Run:
    scripted(team, "w", {"text": "never"})
    spec = {"limits": {"max_tokens": 1}, "steps": [{"kind": "agent", "id": "one", "agent": "w", "prompt": "a long prompt"}]}
    run = execute(start(pipeline(team, spec)))
    assert run.status == "waiting_review"
    assert run.review_items.get().reason == "budget"
    return run


# --- defects ----------------------------------------------------------------------------------

def test_it_stops_saying_streaming_for_a_failed_model_turn(team, owner):
    scripted(team, "w", {"error": "model exploded", "retryable": False})
    spec = {"steps": [{"kind": "agent", "id": "one", "agent": "w", "prompt": "x", "on_failure": "fail"}]}
    run = execute(start(pipeline(team, spec)))
    assert run.status == "failed"

    html = client_for(owner).get(f"/runs/{run.pk}/").content.decode()

    assert "streaming…" not in html
    assert "no reply: " in html and "model exploded" in html


def test_it_stops_saying_streaming_for_a_budget_stopped_turn(team, owner):
    run = budget_stopped(team)

    html = client_for(owner).get(f"/runs/{run.pk}/").content.decode()

    assert "streaming…" not in html
    assert "stopped by the budget" in html


def test_it_refuses_to_resume_a_budget_stop_until_the_budget_is_raised(team, owner):
    run = budget_stopped(team)
    item = run.review_items.get()

    with pytest.raises(Conflict, match="budget") as refused:
        do_decide_review(item, owner, "resume", submit=False)
    assert "pause it again" in refused.value.message
    run.refresh_from_db()
    assert run.status == "waiting_review" and run.review_items.get().status == "pending"
    assert "Stopped at its budget" in client_for(owner).get(f"/runs/{run.pk}/").content.decode()

    do_decide_review(item, owner, "resume", raise_budget={"max_tokens": 10_000}, submit=False)
    run.refresh_from_db()
    assert run.status == "queued"


def test_it_asks_for_a_confirmation_and_a_reason_before_cancelling_work(team, owner):
    run = budget_stopped(team)  # a pending review: cancelling discards it
    client = client_for(owner)

    first = client.post(f"/runs/{run.pk}/cancel/")
    assert first.status_code == 200 and b"Cancel run #" in first.content and b"pending review" in first.content
    no_reason = client.post(f"/runs/{run.pk}/cancel/", {"confirm": "1", "reason": " "})
    assert no_reason.status_code == 400
    run.refresh_from_db()
    assert run.status == "waiting_review" and not run.cancel_requested

    done = client.post(f"/runs/{run.pk}/cancel/", {"confirm": "1", "reason": "wrong input"})
    assert done.status_code == 302
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert RunEvent.objects.get(run=run, type="run.cancel_requested").data["reason"] == "wrong input"


def test_it_hides_eval_runs_from_the_runs_list_unless_asked(team, owner, no_submit):
    scripted(team, "w", {"text": "x"})
    mine = do_start_run(pipeline(team, THREE, "mine").latest_version(), {}, owner)
    harness = pipeline(team, THREE, "eval 1: suite")
    harness.internal = True
    harness.save(update_fields=["internal"])
    internal_runs = [do_start_run(harness.latest_version(), {}) for _ in range(2)]
    suite_pipe = pipeline(team, THREE, "suite target")
    case_run = do_start_run(suite_pipe.latest_version(), {})
    suite = EvalSuite.objects.create(team=team, name="s", slug="s", pipeline_version=suite_pipe.latest_version())
    case = EvalCase.objects.create(suite=suite, name="c")
    EvalResult.objects.create(eval_run=EvalRun.objects.create(suite=suite), case=case, run=case_run, status="passed")
    client = client_for(owner)

    default = client.get("/runs/").content.decode()
    shown = client.get("/runs/?evals=on").content.decode()

    assert f'id="run-row-{mine.pk}"' in default
    assert all(f'id="run-row-{r.pk}"' not in default for r in [*internal_runs, case_run])
    assert all(f'id="run-row-{r.pk}"' in shown for r in [mine, *internal_runs, case_run])
    assert "Show eval runs" in default


# --- the canvas, the panel, the timeline -------------------------------------------------------

def test_it_gives_the_diagram_each_steps_state_and_a_loop_counter(team, owner):
    scripted(team, "w", {"text": "again"})
    spec = {"steps": [
        {"kind": "loop", "id": "rounds", "max_iterations": 3, "until": {"ref": "steps.w1.output", "op": "equals", "value": "ok"},
         "body": [{"kind": "agent", "id": "w1", "agent": "w", "prompt": "x"}]},
        {"kind": "parallel", "id": "fan", "branches": [{"kind": "agent", "id": "l", "agent": "w", "prompt": "l"},
                                                       {"kind": "agent", "id": "r", "agent": "w", "prompt": "r"}]}]}
    run = execute(start(pipeline(team, spec)))

    data = client_for(owner).get(f"/runs/{run.pk}/canvas.json").json()

    nodes = data["nodes"]
    assert nodes["rounds"]["counter"] == "3/3" and nodes["rounds"]["status"] == "succeeded"
    assert nodes["w1"]["key"] == "w1#3" and nodes["w1"]["keys"] == ["w1#1", "w1#2", "w1#3"]
    assert nodes["l"]["status"] == nodes["r"]["status"] == "succeeded" and nodes["l"]["tokens"] > 0
    assert data["seq"] == Run.objects.get(pk=run.pk).last_seq
    panel = client_for(owner).get(f"/runs/{run.pk}/steps/w1%232/")  # keys of loop iterations hold `#`
    assert panel.status_code == 200 and 'data-step-key="w1#2"' in panel.content.decode()


def test_it_shows_a_steps_tool_calls_and_only_its_teams_audit_rows(team, owner, outsider):
    scripted(team, "w", {"tool_calls": [{"name": "t__echo", "arguments": {"text": "hi"}}]}, {"text": "done"})
    spec = {"steps": [{"kind": "agent", "id": "one", "agent": "w", "prompt": "x"}]}
    run = execute(start(pipeline(team, spec)), counting_toolbox({"w": ["t__echo"]}, []))
    now = timezone.now()
    AuditEntry.objects.create(team_id=team.pk, principal_kind="agent", agent_name="w", run_id=run.pk, step_key="one",
                              tool_name="t__echo", status="ok", created_at=now)
    other = do_create_team("Other", outsider)
    AuditEntry.objects.create(team_id=other.pk, principal_kind="agent", run_id=run.pk, step_key="one",
                              tool_name="secret__tool", status="ok", created_at=now)

    html = client_for(owner).get(f"/runs/{run.pk}/steps/one/").content.decode()

    assert 'class="tool-call panel-tool-call state-ok"' in html and 'data-tool="t__echo"' in html
    assert "echo: hi" in html
    assert html.count('class="audit-row"') == 1 and "secret__tool" not in html
    assert client_for(outsider).get(f"/runs/{run.pk}/steps/one/").status_code == 404
    assert client_for(owner).get(f"/runs/{run.pk}/steps/nope/").status_code == 404
    page = client_for(owner).get(f"/runs/{run.pk}/").content.decode()
    assert 'class="tool-summary"' in page and "<code>t__echo</code>" in page.split('class="tool-summary"')[1][:400]


def test_it_draws_the_timeline_of_steps_model_turns_and_tool_calls(team, owner):
    scripted(team, "w", {"tool_calls": [{"name": "t__echo", "arguments": {"text": "hi"}}]}, {"text": "done"})
    run = execute(start(pipeline(team, {"steps": [{"kind": "agent", "id": "one", "agent": "w", "prompt": "x"}]})),
                  counting_toolbox({"w": ["t__echo"]}, []))

    html = client_for(owner).get(f"/runs/{run.pk}/").content.decode()
    timeline = html.split('id="run-timeline"')[1].split("</section>")[0]

    assert timeline.count('data-span-kind="step"') == 1
    assert timeline.count('data-span-kind="model"') == 2 and timeline.count('data-span-kind="tool"') == 1


def test_it_runs_again_with_the_same_input(team, owner, no_submit):
    scripted(team, "w", {"text": "x"})
    run = execute(start(pipeline(team, {"inputs": {"topic": {"type": "string"}}, "steps": THREE["steps"]}), {"topic": "t"}))

    response = client_for(owner).post(f"/runs/{run.pk}/again/")

    again = Run.objects.exclude(pk=run.pk).get()
    assert response.status_code == 302 and response["Location"] == f"/runs/{again.pk}/"
    assert again.input == {"topic": "t"} and again.pipeline_version_id == run.pipeline_version_id


def test_it_forks_from_a_step_with_an_edited_output_from_the_page(team, owner, teammate, outsider, no_submit):
    scripted(team, "w", {"text": "got {{prompt}}"})
    run = execute(start(pipeline(team, THREE)))
    do_create_team("Other", outsider)

    assert client_for(teammate).post(f"/runs/{run.pk}/fork/", {"step": "two"}).status_code == 403  # a viewer
    assert client_for(outsider).post(f"/runs/{run.pk}/fork/", {"step": "two"}).status_code == 404  # another team
    response = client_for(owner).post(f"/runs/{run.pk}/fork/", {"step": "two", "edit": "1", "output": "HAND"})

    fork = Run.objects.exclude(pk=run.pk).get()
    assert response.status_code == 302 and response["Location"] == f"/runs/{fork.pk}/"
    assert StepRun.objects.get(run=fork, key="two").output == "HAND"
    fork = execute(fork)
    assert "three sees HAND" in StepRun.objects.get(run=fork, key="three").output
    html = client_for(owner).get(f"/runs/{fork.pk}/").content.decode()
    assert f"Forked from <a href=\"/runs/{run.pk}/\">run #{run.pk}</a>" in html


def test_it_hides_fork_and_run_again_from_viewers(team, owner, teammate):
    scripted(team, "w", {"text": "x"})
    run = execute(start(pipeline(team, THREE)))
    viewer_html = client_for(teammate).get(f"/runs/{run.pk}/steps/two/").content.decode()
    owner_html = client_for(owner).get(f"/runs/{run.pk}/steps/two/").content.decode()
    assert 'id="fork-form"' not in viewer_html and 'id="fork-form"' in owner_html
    assert 'id="run-again"' not in client_for(teammate).get(f"/runs/{run.pk}/").content.decode()

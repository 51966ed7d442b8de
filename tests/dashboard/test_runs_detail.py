"""The live run page as the server renders it: the step tree, turns and tool calls, escaping,
and the fragments the page fetches when events arrive."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from orchestrator.models import RunEvent
from tests.conftest import counting_toolbox, execute, pipeline, scripted, start

pytestmark = pytest.mark.django_db(transaction=True)

PWN = "<script>window.__pwned=1</script>"


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def card_ids(html: str) -> list[str]:
    return re.findall(r'class="step-card[^"]*" id="([^"]+)"', html)


def step_statuses(html: str) -> list[tuple[str, str]]:
    return re.findall(r'id="(step-[^"]+)" data-step-key="[^"]+" data-status="([^"]+)"', html)


def test_it_draws_parallel_branches_and_the_join(team, owner):
    for name in ("a", "b"):
        scripted(team, name, {"text": f"view {name}"})
    scripted(team, "join", {"text": "**summary**"})
    spec = {"steps": [{"kind": "parallel", "id": "desk", "branches": [
        {"kind": "agent", "id": "left", "agent": "a", "prompt": "x"},
        {"kind": "agent", "id": "right", "agent": "b", "prompt": "y"}],
        "join": {"kind": "agent", "id": "summary", "agent": "join", "prompt": "z"}}]}
    run = execute(start(pipeline(team, spec)))

    html = client_for(owner).get(f"/runs/{run.pk}/").content.decode()

    assert step_statuses(html) == [("step-desk", "succeeded"), ("step-left", "succeeded"),
                                   ("step-right", "succeeded"), ("step-summary", "succeeded")]
    assert "<strong>summary</strong>" in html  # the join's markdown output, sanitised


def test_it_draws_each_loop_iteration_and_the_branch_taken(team, owner):
    scripted(team, "writer", {"text": "draft"}, rules=[{"if_contains": "again", "replies": [{"text": "final"}]}])
    scripted(team, "critic", {"text": "again"}, rules=[{"if_contains": "final", "replies": [{"text": "ok"}]}])
    spec = {"steps": [
        {"kind": "loop", "id": "rounds", "max_iterations": 3,
         "until": {"ref": "steps.critic.output", "op": "equals", "value": "ok"},
         "body": [{"kind": "agent", "id": "writer", "agent": "writer", "prompt": "{{ steps.critic.output }}"},
                  {"kind": "agent", "id": "critic", "agent": "critic", "prompt": "{{ steps.writer.output }}"}]},
        {"kind": "branch", "id": "gate", "if": {"ref": "steps.critic.output", "op": "equals", "value": "ok"},
         "then": [{"kind": "agent", "id": "ship", "agent": "writer", "prompt": "ship"}],
         "else": [{"kind": "agent", "id": "drop", "agent": "writer", "prompt": "drop"}]}]}
    run = execute(start(pipeline(team, spec)))

    html = client_for(owner).get(f"/runs/{run.pk}/").content.decode()

    assert card_ids(html) == ["step-rounds", "step-writer--1", "step-critic--1", "step-writer--2", "step-critic--2",
                              "step-gate", "step-ship", "step-drop"]
    assert "iteration 2 of at most 3" in html
    assert "arm-taken" in html and "arm-not_taken" in html


def test_it_shows_prompt_turns_tool_calls_tokens_and_attempt(team, owner):
    scripted(team, "worker", {"tool_calls": [{"name": "t__add", "arguments": {"a": 2, "b": 3}}]},
             {"text": "sum is {{last}}"})
    spec = {"steps": [{"kind": "agent", "id": "work", "agent": "worker", "prompt": "add 2 and 3"}]}
    run = execute(start(pipeline(team, spec)), counting_toolbox({"worker": ["t__add"]}, []))

    html = client_for(owner).get(f"/runs/{run.pk}/").content.decode()

    assert '<pre class="prompt">add 2 and 3</pre>' in html
    assert "2 model turns" in html and "attempt 1" in html
    assert "<code>t__add</code>" in html and "&quot;a&quot;: 2" in html
    assert '{&quot;sum&quot;: 5}' in html  # the tool's result, escaped
    step_tokens = run.input_tokens + run.output_tokens
    assert f"{run.input_tokens} + {run.output_tokens} tok" in html and step_tokens > 0


def test_it_shows_model_text_and_tool_results_as_inert_text(team, owner):
    scripted(team, "worker", {"tool_calls": [{"name": "t__echo", "arguments": {"text": PWN}}]},
             {"text": f"Here: {PWN} **done**"})
    spec = {"steps": [{"kind": "agent", "id": "work", "agent": "worker", "prompt": f"say {PWN}"}]}
    run = execute(start(pipeline(team, spec)), counting_toolbox({"worker": ["t__echo"]}, []))
    assert PWN in RunEvent.objects.get(run=run, type="tool.finished").data["content"]

    html = client_for(owner).get(f"/runs/{run.pk}/").content.decode()

    assert "window.__pwned" in html
    assert "<script>window.__pwned" not in html
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html


def test_it_shows_why_a_step_failed_and_that_it_waits_for_review(team, owner):
    scripted(team, "worker", {"error": "model exploded", "retryable": False})
    spec = {"steps": [{"kind": "agent", "id": "work", "agent": "worker", "prompt": "x"}]}
    run = execute(start(pipeline(team, spec)))

    html = client_for(owner).get(f"/runs/{run.pk}/").content.decode()

    assert run.status == "waiting_review"
    assert "model exploded" in html and "waiting for review (failure)" in html
    assert "1 review item pending" in html


def test_it_returns_fragments_for_the_named_steps_and_the_header(team, owner):
    scripted(team, "a", {"text": "one"})
    spec = {"steps": [{"kind": "agent", "id": "first", "agent": "a", "prompt": "x"},
                      {"kind": "agent", "id": "second", "agent": "a", "prompt": "y"}]}
    run = execute(start(pipeline(team, spec)))

    html = client_for(owner).get(f"/runs/{run.pk}/fragments/", {"step": ["second", "nope"]}).content.decode()

    assert card_ids(html) == ["step-second"]
    assert 'id="run-header"' in html and 'id="run-outputs"' in html and "<html" not in html


def test_it_returns_the_whole_tree_as_a_fragment(team, owner):
    scripted(team, "a", {"text": "one"})
    spec = {"steps": [{"kind": "agent", "id": "first", "agent": "a", "prompt": "x"}]}
    run = execute(start(pipeline(team, spec)))

    html = client_for(owner).get(f"/runs/{run.pk}/fragments/", {"tree": "1"}).content.decode()

    assert 'id="run-tree"' in html and card_ids(html) == ["step-first"]


def test_it_draws_steps_not_yet_reached_as_pending(team, owner):
    scripted(team, "a", {"text": "one"})
    spec = {"steps": [{"kind": "agent", "id": "first", "agent": "a", "prompt": "x"},
                      {"kind": "review", "id": "gate", "instructions": "Ship it?"},
                      {"kind": "agent", "id": "after", "agent": "a", "prompt": "y"}]}
    run = execute(start(pipeline(team, spec)))

    html = client_for(owner).get(f"/runs/{run.pk}/").content.decode()

    assert step_statuses(html) == [("step-first", "succeeded"), ("step-gate", "waiting_review"), ("step-after", "pending")]
    assert "Ship it?" in html


def test_it_starts_the_page_after_the_last_event_it_rendered(team, owner):
    scripted(team, "a", {"text": "one"})
    run = execute(start(pipeline(team, {"steps": [{"kind": "agent", "id": "s", "agent": "a", "prompt": "x"}]})))

    html = client_for(owner).get(f"/runs/{run.pk}/").content.decode()

    assert f'data-after="{run.last_seq}"' in html

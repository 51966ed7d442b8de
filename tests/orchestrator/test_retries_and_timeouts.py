"""Steps retry transient failures with backoff, time out, and pause for review when they give up."""

from __future__ import annotations

import time

import pytest

from orchestrator.models import RunEvent, StepRun
from tests.conftest import run_spec, scripted

pytestmark = pytest.mark.django_db(transaction=True)


def _one(agent: str = "w", **step) -> dict:
    return {"steps": [{"kind": "agent", "id": "s", "agent": agent, "prompt": "go", **step}]}


def test_it_retries_a_transient_error_with_backoff(team):
    scripted(team, "w", {"text": "fine", "error": "503 overloaded", "fail_attempts": [1, 2]})

    started = time.perf_counter()
    run = run_spec(team, _one(retry={"max_attempts": 3, "backoff_s": 0.1, "backoff_factor": 2}))
    elapsed = time.perf_counter() - started

    assert run.status == "succeeded", run.error
    retries = RunEvent.objects.filter(run=run, type="step.retrying").order_by("seq")
    assert [(e.data["attempt"], e.data["delay_s"]) for e in retries] == [(2, 0.1), (3, 0.2)]
    assert elapsed >= 0.3
    assert StepRun.objects.get(run=run, key="s").attempt == 3


def test_it_does_not_retry_a_permanent_error(team):
    scripted(team, "w", {"error": "401 invalid key", "retryable": False})

    run = run_spec(team, _one(retry={"max_attempts": 3, "backoff_s": 0}))

    assert run.status == "waiting_review"
    assert not RunEvent.objects.filter(run=run, type="step.retrying").exists()


def test_it_times_out_a_slow_attempt_and_retries_it(team):
    scripted(team, "w", {"text": "slow", "delay_ms": 2000})

    started = time.perf_counter()
    run = run_spec(team, _one(timeout_s=0.2, retry={"max_attempts": 2, "backoff_s": 0}))

    assert time.perf_counter() - started < 1.5
    assert run.status == "waiting_review"
    item = run.review_items.get()
    assert item.reason == "failure"
    assert item.context["error"] == "timed out after 0.2s"
    assert RunEvent.objects.filter(run=run, type="step.retrying").count() == 1


def test_it_fails_the_run_when_the_step_policy_says_fail(team):
    scripted(team, "w", {"error": "bad request", "retryable": False})

    run = run_spec(team, _one(on_failure="fail"))

    assert run.status == "failed"
    assert "bad request" in run.error


def test_it_continues_with_the_error_as_data_when_the_policy_says_continue(team):
    scripted(team, "w", {"error": "bad request", "retryable": False})
    scripted(team, "next", {"text": "{{prompt}}"})
    spec = {"steps": [{"kind": "agent", "id": "s", "agent": "w", "prompt": "go", "on_failure": "continue"},
                      {"kind": "agent", "id": "t", "agent": "next", "prompt": "previous error: {{ steps.s.error }}"}]}

    run = run_spec(team, spec)

    assert run.status == "succeeded"
    assert run.output["result"] == "previous error: bad request"


def test_it_fails_a_step_whose_agent_never_stops_calling_tools(team):
    from mcpgateway.inprocess import InProcessToolbox

    box = InProcessToolbox(grants={"*": ["*"]})
    box.register("t__ping", lambda: "pong")
    scripted(team, "w", {"tool_calls": [{"name": "t__ping", "arguments": {}}]}, max_turns=3)

    run = run_spec(team, _one(on_failure="fail"), toolbox=box)

    assert run.status == "failed"
    assert "within 3 turns" in run.error
    assert RunEvent.objects.filter(run=run, type="tool.finished").count() == 3


def test_it_returns_tool_errors_and_denials_to_the_model_as_data(team):
    from mcpgateway.inprocess import InProcessToolbox

    box = InProcessToolbox(grants={"w": ["t__div"]})
    box.register("t__div", lambda a, b: a / b)
    box.register("t__secret", lambda: "nope")
    scripted(team, "w", {"tool_calls": [{"name": "t__div", "arguments": {"a": 1, "b": 0}},
                                        {"name": "t__secret", "arguments": {}}]}, {"text": "{{last}}"})

    run = run_spec(team, _one(), toolbox=box)

    assert run.status == "succeeded"
    results = {e.data["name"]: e.data for e in RunEvent.objects.filter(run=run, type="tool.finished")}
    assert results["t__div"]["is_error"] and "ZeroDivisionError" in results["t__div"]["content"]
    assert results["t__secret"]["is_error"] and "not granted" in results["t__secret"]["content"]
    assert "not granted" in run.output["result"]


def test_it_parses_json_output_and_retries_when_it_is_not_json(team):
    scripted(team, "w", {"text": "not json at all"}, rules=[{"if_contains": "second", "replies": [{"text": '```json\n{"score": 7}\n```'}]}])
    scripted(team, "j", {"text": "not json", "error": "x", "fail_attempts": []})
    spec = {"steps": [{"kind": "agent", "id": "s", "agent": "w", "prompt": "second", "output_format": "json"},
                      {"kind": "branch", "id": "b", "if": {"ref": "steps.s.output.score", "op": "equals", "value": 7},
                       "then": [{"kind": "review", "id": "r", "instructions": "ok?", "show": "score {{ steps.s.output.score }}"}]}]}

    run = run_spec(team, spec)

    assert StepRun.objects.get(run=run, key="s").output == {"score": 7}
    assert run.review_items.get().context["show"] == "score 7"

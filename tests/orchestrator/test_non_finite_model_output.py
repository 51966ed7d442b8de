"""NaN, Infinity and 1e400 from a model or a reviewer (found by a review of the fix for specs
and run inputs): Python's JSON reader takes them, and no database stores them as JSON — a
step's JSON answer, an OpenAI-compatible model's tool arguments and a reviewer's edited
output or raised budget each failed their run or answered a 500. Now the model's answer is an
invalid answer (retried like any), and the reviewer's a 400 naming the field."""

from __future__ import annotations

import pytest

from orchestrator.models import StepRun
from tests.conftest import execute, pipeline, scripted, start

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("answer", ['{"score": NaN}', '{"score": Infinity}', '{"score": 1e400}'])
def test_a_json_answer_with_a_non_finite_number_is_an_invalid_answer(team, answer):
    scripted(team, "w", {"text": answer})
    pipe = pipeline(team, {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "score it",
                                      "output_format": "json", "retry": {"max_attempts": 2, "backoff_s": 0}}]})
    run = execute(start(pipe))  # (the scripted model gives each attempt the same first answer)
    step = StepRun.objects.get(run=run, key="a")
    assert (run.status, step.attempt) == ("waiting_review", 2), (run.status, run.error)
    assert "is not valid JSON" in step.error and ("not a JSON number" in step.error or "not a finite number" in step.error)


@pytest.mark.usefixtures("outbound_allows_loopback")
def test_tool_arguments_with_nan_from_an_openai_compatible_model_are_invalid_arguments(team, monkeypatch):
    from orchestrator.models import Agent
    from tests.conftest import counting_toolbox
    from tests.fakes.openai_server import FakeOpenAIServer

    monkeypatch.setenv("TEST_PROVIDER_KEY", "sk-test")
    with FakeOpenAIServer() as server:
        server.push(tool_calls=[{"name": "t__add", "arguments": '{"a": NaN, "b": 3}'}], prompt_tokens=3, completion_tokens=3)
        Agent.objects.create(team=team, name="calc", provider="openai", model="m",
                             options={"base_url": server.base_url, "api_key_env": "TEST_PROVIDER_KEY"})
        run = start(pipeline(team, {"steps": [{"kind": "agent", "id": "c", "agent": "calc", "prompt": "add",
                                               "on_failure": "fail", "retry": {"max_attempts": 1}}]}))
        run = execute(run, counting_toolbox({"calc": ["t__add"]}, []))
    assert run.status == "failed" and "finite" in run.error, (run.status, run.error)

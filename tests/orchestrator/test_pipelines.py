"""Pipelines keep immutable versions; runs pin the version they started with; inputs are checked."""

from __future__ import annotations

import pytest

from orchestrator.actions import do_create_pipeline, do_save_pipeline_version, do_start_run
from orchestrator.actions.errors import ActionError
from orchestrator.engine.errors import SpecError
from tests.conftest import execute, scripted

pytestmark = pytest.mark.django_db(transaction=True)


def _spec(prompt: str) -> dict:
    return {"inputs": {"name": {"type": "string"}, "count": {"type": "integer", "required": False, "default": 2}},
            "steps": [{"kind": "agent", "id": "s", "agent": "echo", "prompt": prompt}]}


@pytest.fixture
def echo(team):
    return scripted(team, "echo", {"text": "{{prompt}}"})


def test_it_makes_a_new_version_for_every_edit_and_runs_pin_theirs(team, owner, echo):
    pipe = do_create_pipeline(team, "Greeter", _spec("hello {{ input.name }}"), owner)
    v1 = pipe.latest_version()
    run1 = do_start_run(v1, {"name": "Ada"}, owner, submit=False)
    v2 = do_save_pipeline_version(pipe, _spec("bye {{ input.name }} x{{ input.count }}"), owner, note="wording")

    assert (v1.number, v2.number) == (1, 2)
    assert execute(run1).output["result"] == "hello Ada"
    run2 = execute(do_start_run(v2, {"name": "Ada"}, owner, submit=False))
    assert run2.output["result"] == "bye Ada x2"
    assert run1.pipeline_version_id == v1.pk


def test_it_refuses_to_change_a_saved_version(team, owner, echo):
    version = do_create_pipeline(team, "Greeter", _spec("hi"), owner).latest_version()
    version.spec = {"steps": []}
    with pytest.raises(ValueError, match="immutable"):
        version.save()


def test_it_rejects_a_spec_naming_an_agent_the_team_lacks(team, owner, echo):
    bad = {"steps": [{"kind": "agent", "id": "s", "agent": "ghost", "prompt": "x"}]}
    with pytest.raises(SpecError) as info:
        do_create_pipeline(team, "Bad", bad, owner)
    assert info.value.errors[0]["path"] == "steps.0.agent"


@pytest.mark.parametrize(("data", "field"), [
    ({}, "input.name"),
    ({"name": 5}, "input.name"),
    ({"name": "x", "count": "two"}, "input.count"),
    ({"name": "x", "count": True}, "input.count"),
    (["not", "an", "object"], "input"),
])
def test_it_rejects_bad_run_input_naming_the_field(team, owner, echo, data, field):
    version = do_create_pipeline(team, "Greeter", _spec("hi"), owner).latest_version()
    with pytest.raises(ActionError) as info:
        do_start_run(version, data, owner, submit=False)
    assert info.value.field == field
    assert not version.runs.exists()

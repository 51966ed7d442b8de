"""Pipeline specs are validated with precise, path-carrying errors; JSON and YAML both work."""

from __future__ import annotations

import pytest

from orchestrator.engine.errors import SpecError
from orchestrator.engine.spec import parse_spec, spec_json_schema

AGENT = {"kind": "agent", "id": "a", "agent": "writer", "prompt": "hi"}


def _errors(document, agents=None) -> list[dict[str, str]]:
    with pytest.raises(SpecError) as info:
        parse_spec(document, agent_names=agents)
    return info.value.errors


def test_it_accepts_every_step_kind():
    spec = parse_spec({
        "inputs": {"topic": {"type": "string"}},
        "steps": [
            {"kind": "sequence", "id": "seq", "steps": [AGENT]},
            {"kind": "parallel", "id": "par", "branches": [{**AGENT, "id": "p1"}, {**AGENT, "id": "p2"}],
             "join": {**AGENT, "id": "j", "prompt": "{{ steps.p1.output }} {{ steps.p2.output }}"}},
            {"kind": "loop", "id": "lp", "body": [{**AGENT, "id": "l1"}],
             "until": {"any": [{"ref": "steps.l1.output", "op": "contains", "value": "ok"}, {"not": {"ref": "input.topic", "op": "truthy"}}]}},
            {"kind": "branch", "id": "br", "if": {"ref": "steps.l1.output", "op": "equals", "value": "x"},
             "then": [{**AGENT, "id": "t1"}], "else": [{**AGENT, "id": "e1"}]},
            {"kind": "review", "id": "gate", "instructions": "check", "show": "{{ steps.br.output }}"},
        ],
        "outputs": {"final": "steps.gate.output"},
    }, agent_names={"writer"})
    assert [s.kind for s in spec.steps] == ["sequence", "parallel", "loop", "branch", "review"]
    assert len(spec.walk()) == 12


def test_it_accepts_yaml():
    spec = parse_spec("steps:\n  - {kind: agent, id: a, agent: writer, prompt: 'Say {{ input.x }}'}\n")
    assert spec.steps[0].agent == "writer"


def test_it_names_the_path_of_a_missing_field_deep_inside():
    errors = _errors({"steps": [AGENT, {"kind": "loop", "id": "l", "until": {"ref": "steps.a.output", "op": "truthy"},
                                        "body": [{"kind": "agent", "id": "b", "prompt": "x"}]}]})
    assert errors == [{"path": "steps.1.body.0.agent", "message": "Field required"}]


def test_it_rejects_an_unknown_step_kind_at_its_path():
    errors = _errors({"steps": [AGENT, {"kind": "teleport", "id": "t"}]})
    assert errors[0]["path"] == "steps.1"
    assert "teleport" in errors[0]["message"]


def test_it_rejects_unknown_fields():
    errors = _errors({"steps": [{**AGENT, "promt": "typo"}]})
    assert errors[0]["path"] == "steps.0.promt"


def test_it_rejects_duplicate_step_ids():
    errors = _errors({"steps": [AGENT, {"kind": "sequence", "id": "s", "steps": [AGENT]}]})
    assert errors == [{"path": "steps.1.steps.0.id", "message": "duplicate step id 'a' (first at steps.0)"}]


def test_it_rejects_references_to_unknown_steps_and_inputs():
    errors = _errors({"inputs": {"topic": {}}, "steps": [{**AGENT, "prompt": "{{ steps.ghost.output }} {{ input.tpoic }}"}]})
    assert {e["message"] for e in errors} == {"reference to unknown step 'ghost'", "reference to undeclared input 'tpoic'"}
    assert all(e["path"] == "steps.0.prompt" for e in errors)


def test_it_rejects_agents_the_team_does_not_have():
    errors = _errors({"steps": [AGENT]}, agents={"coder"})
    assert errors == [{"path": "steps.0.agent", "message": "unknown agent 'writer' (team has: coder)"}]


def test_it_rejects_a_malformed_condition_with_its_path():
    errors = _errors({"steps": [AGENT, {"kind": "branch", "id": "b", "if": {"ref": "steps.a.output", "op": "matches", "value": "("},
                                        "then": [{**AGENT, "id": "c"}]}]})
    assert errors[0]["path"] == "steps.1.if"
    assert "regular expression" in errors[0]["message"]


def test_it_rejects_out_of_range_limits():
    errors = _errors({"steps": [{"kind": "loop", "id": "l", "max_iterations": 0, "until": {"ref": "input.x", "op": "truthy"},
                                 "body": [AGENT]}]})
    assert errors[0]["path"] == "steps.0.max_iterations"


def test_it_rejects_text_that_is_neither_json_nor_yaml():
    errors = _errors("steps: [unclosed")
    assert errors[0]["path"] == ""
    assert "neither valid JSON nor YAML" in errors[0]["message"]


def test_it_rejects_a_document_without_steps():
    assert _errors({"steps": []})[0]["path"] == "steps"
    assert _errors([1, 2])[0]["message"].startswith("a spec must be an object")


def test_it_publishes_a_json_schema_with_every_kind():
    schema = spec_json_schema()
    text = str(schema)
    for kind in ("agent", "sequence", "parallel", "loop", "branch", "review"):
        assert f"'{kind}'" in text
    assert schema["title"] == "Agentdeck pipeline spec"


@pytest.mark.django_db
def test_it_serves_the_schema_over_http(client):
    response = client.get("/schemas/pipeline-spec.json")
    assert response.status_code == 200
    assert response.json()["title"] == "Agentdeck pipeline spec"

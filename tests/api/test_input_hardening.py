"""The REST API refuses what probing found: over-deep specs (as objects, JSON text, YAML
text, or a body too deep to parse), forward references, regexes RE2 cannot run, and NUL
characters — each with a 422 naming the field, never a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from orchestrator.engine.spec_bounds import MAX_NESTING
from orchestrator.models import Pipeline

pytestmark = pytest.mark.django_db

AGENT = {"kind": "agent", "id": "a", "agent": "w", "prompt": "hi"}


def nested(levels: int) -> dict[str, Any]:
    step: dict[str, Any] = dict(AGENT)
    for i in range(levels):
        step = {"kind": "sequence", "id": f"s{i}", "steps": [step]}
    return {"steps": [step]}


def raw_post(path: str, token: str, text: str):
    response = Client().post(f"/api/v1{path}", text, content_type="application/json",
                             HTTP_AUTHORIZATION=f"Bearer {token}")
    return response.status_code, response.json()


def test_it_refuses_a_spec_object_nested_too_deep_with_the_path(api, keys):
    status, body = api.call("post", "/pipelines", keys["builder"], {"name": "deep", "spec": nested(MAX_NESTING)})
    assert status == 422
    assert body["error"]["field"] == "spec.steps.0" + ".steps.0" * MAX_NESTING
    assert not Pipeline.objects.filter(name="deep").exists()


def test_it_refuses_a_spec_string_of_json_nested_too_deep(api, keys):
    text = json.dumps(nested(MAX_NESTING))
    status, body = api.call("post", "/pipelines", keys["builder"], {"name": "deep", "spec": text})
    assert status == 422 and body["error"]["field"].startswith("spec.steps.0.steps.0")


def test_it_refuses_a_yaml_string_10000_levels_deep(api, keys):
    text = "steps: " + "[" * 10_000 + "]" * 10_000
    status, body = api.call("post", "/pipelines", keys["builder"], {"name": "deep", "spec": text})
    assert status == 422
    assert body["error"]["field"].startswith("spec.steps.0.0")
    assert "nested deeper" in body["error"]["message"]


def test_it_refuses_a_json_string_10000_levels_deep(api, keys):
    text = '{"steps": ' + "[" * 10_000 + "]" * 10_000 + "}"
    status, body = api.call("post", "/pipelines", keys["builder"], {"name": "deep", "spec": text})
    assert status == 422 and body["error"]["field"].startswith("spec.steps.0.0")


def test_it_refuses_a_body_10000_levels_deep_before_parsing_it(api, keys):
    text = '{"name": "deep", "spec": {"steps": ' + "[" * 10_000 + "]" * 10_000 + "}}"
    status, body = raw_post("/pipelines", keys["builder"], text)
    assert status == 422
    assert body["error"]["field"].startswith("spec.steps.0.0")


def test_it_refuses_a_new_version_nested_too_deep(api, keys):
    status, created = api.call("post", "/pipelines", keys["builder"], {"name": "ok", "spec": nested(1)})
    assert status == 201
    status, body = api.call("post", f"/pipelines/{created['id']}/versions", keys["builder"], {"spec": nested(MAX_NESTING + 3)})
    assert status == 422 and body["error"]["field"].startswith("spec.steps.0.steps.0")


def test_it_refuses_a_reference_to_a_later_step(api, keys):
    spec = {"steps": [{**AGENT, "prompt": "{{ steps.b.output }}"}, {**AGENT, "id": "b"}]}
    status, body = api.call("post", "/pipelines", keys["builder"], {"name": "fwd", "spec": spec})
    assert status == 422 and body["error"]["field"] == "spec.steps.0.prompt"
    assert "runs after this one" in body["error"]["message"]


def test_it_refuses_a_pattern_re2_cannot_run(api, keys):
    spec = {"steps": [AGENT, {"kind": "branch", "id": "b", "then": [{**AGENT, "id": "t"}],
                              "if": {"ref": "steps.a.output", "op": "matches", "value": "(?=look)ahead"}}]}
    status, body = api.call("post", "/pipelines", keys["builder"], {"name": "rx", "spec": spec})
    assert status == 422 and body["error"]["field"] == "spec.steps.1.if"


def test_it_refuses_a_nul_in_a_pipeline_name(api, keys):
    status, body = api.call("post", "/pipelines", keys["builder"], {"name": "bad\x00name", "spec": nested(0)})
    assert status == 422
    assert body["error"]["field"] == "name" and "NUL" in body["error"]["message"]
    assert not Pipeline.objects.exists()


def test_it_refuses_a_nul_in_a_spec_prompt(api, keys):
    spec = {"steps": [{**AGENT, "prompt": "x\x00"}]}
    status, body = api.call("post", "/pipelines", keys["builder"], {"name": "n", "spec": spec})
    assert status == 422 and body["error"]["field"] == "spec.steps.0.prompt"


def test_it_refuses_a_nul_in_a_run_input(api, keys):
    status, created = api.call("post", "/pipelines", keys["builder"], {"name": "ok", "spec": nested(0)})
    status, body = api.call("post", "/runs", keys["builder"], {"pipeline": created["id"], "input": {"topic": "a\x00b"}})
    assert status == 422 and body["error"]["field"] == "input.topic"


def test_it_refuses_a_nul_in_an_agent_field(api, keys):
    status, body = api.call("post", "/agents", keys["builder"], {"name": "n", "system_prompt": "be \x00 nice"})
    assert status == 422 and body["error"]["field"] == "system_prompt"


def test_it_refuses_a_nul_in_a_query_parameter(api, keys):
    status, body = api.call("get", "/runs?status=ok%00", keys["builder"])
    assert status == 422 and body["error"]["field"] == "status"


def test_it_refuses_a_deep_body_whatever_its_declared_type(keys):
    text = '{"name": "deep", "spec": ' + "[" * 10_000 + "]" * 10_000 + "}"
    response = Client().post("/api/v1/pipelines", text, content_type="text/plain",
                             HTTP_AUTHORIZATION=f"Bearer {keys['builder']}")
    assert response.status_code == 422
    assert response.json()["error"]["field"].startswith("spec.0.0")


@pytest.mark.parametrize("levels", [MAX_NESTING + 20, 190])
def test_it_serves_a_stored_version_that_is_already_too_deep(api, keys, levels):
    from orchestrator.models import PipelineVersion

    status, created = api.call("post", "/pipelines", keys["builder"], {"name": "old", "spec": nested(0)})
    deep: Any = "x"
    for _ in range(levels):
        deep = [deep]
    spec = nested(levels) if levels < 100 else {**nested(0), "inputs": {"x": {"default": deep}}}
    PipelineVersion.objects.filter(pipeline_id=created["id"]).update(spec=spec)
    status, body = api.call("get", f"/pipelines/{created['id']}/versions/1", keys["builder"])
    assert status == 200 and body["spec"] == spec
    status, _ = api.call("get", f"/pipelines/{created['id']}/versions", keys["builder"])
    assert status == 200

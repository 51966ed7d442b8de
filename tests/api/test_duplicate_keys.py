"""A key repeated in one object of a spec is refused (found by a review): JSON's and YAML's
readers both kept the last value, so a spec with two `prompt:` keys was saved with the first
prompt gone, and nobody was told."""

from __future__ import annotations

import pytest

from orchestrator.engine.document_guard import DocumentError, load_text
from orchestrator.models import Pipeline

pytestmark = pytest.mark.django_db(transaction=True)
TWO_PROMPTS = ("steps:\n"
               "  - kind: agent\n    id: a\n    agent: w\n"
               "    prompt: Summarise the contract and list every risk\n"
               "    prompt: hi\n")


def test_a_yaml_spec_with_a_repeated_key_is_refused(api, keys):
    status, body = api.call("post", "/pipelines", keys["builder"], {"name": "dup", "spec": TWO_PROMPTS})
    assert status == 422 and "'prompt' appears twice" in str(body) and "line 6" in str(body), (status, body)
    assert not Pipeline.objects.exists()


@pytest.mark.parametrize("text, form", [
    ('{"steps": [], "steps": [1]}', "json"), ('{"a": {"b": 1, "b": 2}}', "auto"), ("a: 1\nb:\n  c: 1\n  c: 1\n", "yaml"),
    ('{"a": 1, "a": 1}', "yaml"),  # YAML's flow style reads JSON too
])
def test_a_repeated_key_is_refused_in_either_syntax(text, form):
    with pytest.raises(DocumentError, match="appears twice"):
        load_text(text, form)


def test_the_same_key_in_different_objects_is_fine():
    assert load_text('[{"a": 1}, {"a": 2}]', "json") == [{"a": 1}, {"a": 2}]
    assert load_text("- a: 1\n- a: 2\n", "yaml") == [{"a": 1}, {"a": 2}]


def test_a_json_body_with_a_repeated_key_is_refused_at_the_door(keys):
    """The same for a spec sent as a JSON object (the body itself): the request's reader kept
    the last `prompt` and the pipeline was saved with it (found by a review of the first fix)."""
    from django.test import Client

    body = ('{"name": "dup", "spec": {"steps": [{"kind": "agent", "id": "a", "agent": "w", '
            '"prompt": "Summarise the contract and list every risk", "prompt": "hi"}]}}')
    response = Client().post("/api/v1/pipelines", body, content_type="application/json",
                             HTTP_AUTHORIZATION=f"Bearer {keys['builder']}")
    assert response.status_code == 422 and "'prompt' appears twice" in response.json()["error"]["message"], response.content
    assert not Pipeline.objects.exists()
    fine = body.replace('"prompt": "hi"', '"description": "hi"')
    assert Client().post("/api/v1/pipelines", fine, content_type="application/json",
                         HTTP_AUTHORIZATION=f"Bearer {keys['builder']}").status_code == 422  # (an unknown field)
    ok = body.replace(', "prompt": "hi"', "")
    assert Client().post("/api/v1/pipelines", ok, content_type="application/json",
                         HTTP_AUTHORIZATION=f"Bearer {keys['builder']}").status_code == 201


@pytest.mark.parametrize("text", [
    "servers:\n  echo: {command: a}\n  echo: {command: b}\n",
    '{"mcpServers": {"echo": {"command": "a"}, "echo": {"command": "b"}}}',
])
def test_a_server_named_twice_in_a_config_file_is_refused(text):
    from mcpgateway.actions.config_files import parse_config
    from mcpgateway.errors import ConfigError

    with pytest.raises(ConfigError, match="'echo' appears twice"):
        parse_config(text)


def test_yaml_aliases_in_a_config_file_are_refused():
    from mcpgateway.actions.config_files import parse_config
    from mcpgateway.errors import ConfigError

    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]'] + [f"b{i}: &b{i} [" + ",".join(["*a"] * 9) + "]" for i in range(3)]
    with pytest.raises(ConfigError, match="aliases are not accepted"):
        parse_config("servers: {}\n" + "\n".join(lines) + "\n")

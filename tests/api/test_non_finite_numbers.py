"""NaN and infinities, which Python's JSON reader accepts (`NaN`, `Infinity`, `1e400`) and
YAML writes `.nan` / `.inf`, are no JSON number: no database stores them as JSON. In a spec or
a run input they are refused naming the path (each was a 500, from SQLite's JSON check or
PostgreSQL's jsonb); in a tool call's arguments, which /mcp forwards, the audit row stores
them as strings, where the row's insert failed the call (found by two reviews)."""

from __future__ import annotations

import json
import sys

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.test import Client
from django.urls import reverse

from mcpgateway.actions.access import do_create_api_key, do_grant
from mcpgateway.actions.servers import do_save_server
from mcpgateway.dispatch import Gateway
from mcpgateway.models import AuditEntry
from mcpgateway.types import Principal, ToolInvocation
from orchestrator.models import Pipeline, Run
from tests.conftest import start_servers

pytestmark = pytest.mark.django_db(transaction=True)
AGENT = {"kind": "agent", "id": "a", "agent": "w", "prompt": "hi"}


def with_agent(text: str) -> str:
    """JSON text written by hand (Python's `json.dumps` cannot write what is tested here)."""
    return text.replace("@A", json.dumps(AGENT))


def post(token: str, path: str, text: str) -> tuple[int, str]:
    response = Client(raise_request_exception=False).post(f"/api/v1{path}", text, content_type="application/json",
                                                         HTTP_AUTHORIZATION=f"Bearer {token}")
    return response.status_code, response.content.decode()


@pytest.mark.parametrize("body, where", [
    (json.dumps({"name": "y", "spec": "steps:\n  - {kind: agent, id: a, agent: w, prompt: hi}\n"
                                      "limits: {max_cost_usd: .inf}\n"}), "limits.max_cost_usd"),
    (with_agent('{"name": "j", "spec": {"steps": [@A], "limits": {"max_cost_usd": Infinity}}}'),
     "limits.max_cost_usd"),
    (with_agent('{"name": "n", "spec": {"steps": [@A, {"kind": "branch", "id": "b", "if": {"ref": "steps.a.output", '
                '"op": "equals", "value": NaN}, "then": [{"kind": "agent", "id": "t", "agent": "w", "prompt": "x"}]}]}}'),
     "steps.1.if.value"),
    (with_agent('{"name": "e", "spec": {"steps": [@A], "limits": {"max_tokens": 1e400}}}'), "limits.max_tokens"),
])
def test_a_spec_with_a_non_finite_number_is_refused_naming_it(keys, body, where):
    status, answer = post(keys["builder"], "/pipelines", body)
    assert 400 <= status < 500 and where in answer and "finite" in answer, (status, answer)
    assert not Pipeline.objects.exists()


def test_a_run_input_with_nan_is_refused_naming_it(keys):
    status, created = post(keys["builder"], "/pipelines", json.dumps({"name": "ok", "spec": {"steps": [AGENT]}}))
    assert status == 201, created
    status, answer = post(keys["builder"], "/runs", '{"pipeline": @P, "input": {"x": {"y": [NaN]}}}'.replace("@P", str(json.loads(created)["id"])))
    assert status == 400 and "input.x.y.0" in answer and "finite" in answer, (status, answer)
    assert not Run.objects.exists()


def test_the_builder_refuses_infinity_naming_it(keys):
    client = Client(raise_request_exception=False)
    client.force_login(keys["users"]["builder"])
    body = with_agent('{"name": "dash", "spec": {"steps": [@A], "limits": {"max_cost_usd": Infinity}}}')
    response = client.post(reverse("pipeline-new"), body, content_type="application/json")
    assert 400 <= response.status_code < 500 and "finite" in response.content.decode(), response.content[:300]
    validated = client.post(reverse("pipeline-validate"),
                            with_agent('{"spec": {"steps": [@A], "limits": {"max_cost_usd": Infinity}}}'),
                            content_type="application/json")
    assert "finite" in validated.content.decode() and b"Infinity" not in validated.content.replace(b"Infinity are", b"")


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_a_tool_call_with_a_non_finite_argument_is_made_and_audited(keys, gateway_runtime, number):
    server = do_save_server(keys["team"].pk, "echo", transport="stdio", command=sys.executable,
                            args=["-m", "tests.fakes.mcp_echo_server"], cwd=str(settings.BASE_DIR), operator=True)
    start_servers(gateway_runtime, server)
    key, _ = do_create_api_key(keys["team"].pk, "k", keys["users"]["owner"])
    do_grant(server, api_key=key)
    invocation = ToolInvocation(Principal(team_id=keys["team"].pk, api_key_id=key.pk), "echo__echo",
                                {"message": "n", "extra": number}, call_id="1")
    result = async_to_sync(Gateway(keys["team"].pk).call_tool)(invocation)
    assert "IntegrityError" not in result.content and "DataError" not in result.content, result.content
    row = AuditEntry.objects.get(tool_name="echo__echo")
    assert row.arguments["extra"] == {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}[str(number)]

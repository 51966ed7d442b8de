"""Trying a tool from the tools page: a form from the input schema, a call through the
gateway's dispatch path (grants, audit) against a real stdio MCP server, the result escaped."""

from __future__ import annotations

import sys

import pytest
from django.conf import settings
from django.test import Client

from dashboard.views.tool_try import parse_arguments, schema_fields
from mcpgateway.actions.access import do_grant
from mcpgateway.actions.servers import do_save_server
from mcpgateway.models import AuditEntry, Tool
from tests.conftest import scripted, start_servers


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def echo(team, gateway_runtime):
    server = do_save_server(team.pk, "echo", transport="stdio", command=sys.executable,
                            args=["-m", "tests.fakes.mcp_echo_server"], cwd=str(settings.BASE_DIR), operator=True)
    start_servers(gateway_runtime, server)
    return server


@pytest.fixture
def builder(team, teammate):
    team.memberships.filter(user=teammate).update(role="builder")
    return teammate


def test_it_builds_a_field_for_each_kind_of_property():
    schema = {"type": "object", "required": ["n"], "properties": {
        "text": {"type": "string", "description": "what to say"}, "n": {"type": "integer"},
        "ratio": {"type": "number"}, "loud": {"type": "boolean", "default": False},
        "mode": {"enum": ["a", "b"]}, "tags": {"type": "array", "items": {"type": "string"}},
        "opt": {"type": ["object", "null"]}}}

    fields = schema_fields(schema)

    assert [(f.name, f.kind, f.required) for f in fields][:1] == [("n", "integer", True)]
    assert {f.name: f.kind for f in fields} == {"text": "string", "n": "integer", "ratio": "number", "loud": "boolean",
                                                "mode": "enum", "tags": "json", "opt": "json"}
    filled = schema_fields(schema, {"text": "hi", "n": "3", "ratio": "0.5", "loud": "true", "mode": "b",
                                    "tags": '["x"]', "opt": ""})
    assert parse_arguments(schema, filled) == {"text": "hi", "n": 3, "ratio": 0.5, "loud": True, "mode": "b",
                                               "tags": ["x"]}
    bad = schema_fields(schema, {"n": "three", "mode": "c", "tags": "[x"})
    assert parse_arguments(schema, bad) is None
    assert {f.name: f.error for f in bad if f.error} == {"n": "not a valid integer", "mode": "choose one of a, b",
                                                         "tags": "not valid JSON: Expecting value"}


def test_it_calls_a_granted_tool_as_the_user_and_audits_it(team, builder, echo):
    do_grant(echo)  # team-wide
    tool = Tool.objects.get(server=echo, name="echo")
    client = login(builder)

    form = client.get(f"/tools/try/{tool.pk}/")
    assert form.status_code == 200 and 'name="message"' in form.content.decode()
    response = client.post(f"/tools/try/{tool.pk}/", {"message": "<b>hello</b>", "as_agent": ""})

    page = response.content.decode()
    assert response.status_code == 200
    assert "&lt;b&gt;hello&lt;/b&gt;" in page and "<b>hello</b>" not in page
    row = AuditEntry.objects.get(tool_name="echo__echo")
    assert (row.status, row.user_id, row.arguments) == ("ok", builder.pk, {"message": "<b>hello</b>"})
    assert row.call_id.startswith("try-")


def test_it_converts_typed_fields_before_calling(team, builder, echo):
    do_grant(echo)
    tool = Tool.objects.get(server=echo, name="add")

    response = login(builder).post(f"/tools/try/{tool.pk}/", {"a": "2", "b": "40"})

    assert response.status_code == 200 and 'id="try-output">42<' in response.content.decode()
    assert AuditEntry.objects.get(tool_name="echo__add").arguments == {"a": 2, "b": 40}


def test_it_refuses_and_audits_a_call_without_a_grant(team, builder, echo):
    scripted(team, "coder")
    tool = Tool.objects.get(server=echo, name="echo")

    response = login(builder).post(f"/tools/try/{tool.pk}/", {"message": "x", "as_agent": "coder"})

    assert "Refused" in response.content.decode() and "not granted" in response.content.decode()
    row = AuditEntry.objects.get()
    assert (row.status, row.agent_name, row.user_id) == ("denied", "coder", builder.pk)


def test_it_shows_field_errors_and_calls_nothing(team, builder, echo):
    do_grant(echo)
    tool = Tool.objects.get(server=echo, name="add")

    response = login(builder).post(f"/tools/try/{tool.pk}/", {"a": "two"})

    assert response.status_code == 400 and "not a valid integer" in response.content.decode()
    assert not AuditEntry.objects.exists()


def test_it_lets_no_viewer_try_a_tool(team, owner, teammate, echo):
    do_grant(echo)
    tool = Tool.objects.get(server=echo, name="echo")

    assert login(teammate).post(f"/tools/try/{tool.pk}/", {"message": "x"}).status_code == 403
    assert "Try</a>" not in login(teammate).get("/tools/").content.decode()
    assert "Try</a>" in login(owner).get("/tools/").content.decode()
    assert not AuditEntry.objects.exists()

"""A team installs an operator's template with its own secret over the API, cannot change its
command, and its pipeline runs use the server through the gateway."""

from __future__ import annotations

import sys

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth import get_user_model

from mcpgateway.actions.access import do_create_api_key, do_grant
from mcpgateway.models import AuditEntry, ServerTemplate, ToolServer
from orchestrator.actions import do_add_member
from orchestrator.execution import execute_run
from tests.api.conftest import api, keys  # noqa: F401 - fixtures
from tests.conftest import pipeline, scripted, start, start_servers

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = str(settings.BASE_DIR)
ENV_TEMPLATE = {
    "name": "envs", "description": "Reveals its environment", "command": sys.executable,
    "args": ["-m", "tests.fakes.mcp_env_server"], "cwd": ROOT, "env": {"API_TOKEN": "{{token}}"},
    "parameters": [{"name": "token", "kind": "secret", "label": "API token"}],
}


@pytest.fixture
def template(api, keys) -> ServerTemplate:  # noqa: F811
    operator = get_user_model().objects.create_user("op", is_staff=True)
    do_add_member(keys["team"], operator, "owner")
    token = do_create_api_key(keys["team"].pk, "op", operator, scopes=["read", "admin"])[1]
    status, body = api.call("post", "/gateway/templates", token, ENV_TEMPLATE)
    assert status == 201, body
    return ServerTemplate.objects.get(pk=body["id"])


def install(api, keys, template, **values):  # noqa: F811
    return api.call("post", f"/gateway/templates/{template.pk}/install", keys["builder"],
                    {"name": "my-envs", "parameters": {"token": "team-a-secret-77", **values}})


def test_it_refuses_a_template_to_a_builder(api, keys):  # noqa: F811
    status, _ = api.call("post", "/gateway/templates", keys["builder"], ENV_TEMPLATE)
    assert status == 403
    assert not ServerTemplate.objects.exists()


def test_it_lists_the_catalogue_to_a_viewer(api, keys, template):  # noqa: F811
    status, body = api.call("get", "/gateway/templates", keys["viewer"])
    assert status == 200 and body[0]["name"] == "envs" and body[0]["env_names"] == ["API_TOKEN"]


def test_it_installs_with_the_team_secret_never_shown(api, keys, template):  # noqa: F811
    status, body = install(api, keys, template)
    assert status == 201 and body["template_id"] == template.pk
    assert "team-a-secret-77" not in str(body) and body["env"] == {"API_TOKEN": "${token}"}


def test_it_names_the_missing_parameter(api, keys, template):  # noqa: F811
    status, body = api.call("post", f"/gateway/templates/{template.pk}/install", keys["builder"],
                            {"name": "my-envs", "parameters": {}})
    assert status == 422 and body["error"]["field"] == "parameters.token"
    assert not ToolServer.objects.exists()


def test_it_refuses_a_builder_changing_the_command(api, keys, template):  # noqa: F811
    _, server = install(api, keys, template)
    status, body = api.call("post", "/gateway/servers", keys["builder"],
                            {"name": "my-envs", "command": "/bin/sh", "args": ["-c", "id"]})
    assert status == 403 and body["error"]["field"] == "name"
    status, body = api.call("put", f"/gateway/servers/{server['id']}/parameters", keys["builder"],
                            {"parameters": {"command": "/bin/sh"}})
    assert status == 422 and body["error"]["field"] == "parameters.command"
    assert ToolServer.objects.get(pk=server["id"]).command == sys.executable


def test_it_runs_a_pipeline_with_the_installed_server(api, keys, template, gateway_runtime):  # noqa: F811
    _, body = install(api, keys, template)
    server = ToolServer.objects.get(pk=body["id"])
    do_grant(server, agent="worker")
    start_servers(gateway_runtime, server)
    team = keys["team"]
    scripted(team, "worker", {"tool_calls": [{"name": "my-envs__getenv", "arguments": {"name": "API_TOKEN"}}]},
             {"text": "done"})
    run = start(pipeline(team, {"steps": [{"kind": "agent", "id": "work", "agent": "worker", "prompt": "go"}]}))

    async_to_sync(execute_run)(run.pk)

    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    row = AuditEntry.objects.get(run_id=run.pk, tool_name="my-envs__getenv")
    assert row.status == "ok"
    assert row.result and "team-a-secret-77" not in str(row.result)  # present, and redacted

"""The gateway over the REST API: servers (secrets never echoed), import, tools, grants, keys, audit."""

from __future__ import annotations

import pytest
from django.utils import timezone

from mcpgateway.models import AuditEntry, ServerSecret, ToolServer, ToolStatus
from tests.mcpgateway.conftest import catalogue_tool

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_saves_servers_moving_literal_secrets_into_the_store(api, keys):
    status, body = api.call("post", "/gateway/servers", keys["builder"], {
        "name": "search", "transport": "http", "url": "https://search.example/mcp",
        "headers": {"Authorization": "Bearer sk-live-9"}})
    assert status == 201
    assert body["headers"] == {"Authorization": "${AUTHORIZATION}"}
    assert "sk-live-9" not in str(body)
    assert ServerSecret.objects.get(server_id=body["id"]).value == "Bearer sk-live-9"
    status, body = api.call("post", "/gateway/servers", keys["builder"], {"name": "bad_name", "command": "x"})
    assert status == 422 and body["error"]["field"] == "name"


def test_it_imports_a_config_and_reports_the_bad_field(api, keys):
    good = "servers:\n  files: {url: 'https://93.184.216.34/mcp', transport: http}\n"
    status, body = api.call("post", "/gateway/servers/import", keys["builder"], {"text": good})
    assert status == 201 and body[0]["name"] == "files"
    bad = "servers:\n  gh: {url: 'https://93.184.216.34/mcp', headers: {TOKEN: '${NOT_SET_ANYWHERE_42}'}}\n"
    status, body = api.call("post", "/gateway/servers/import", keys["builder"], {"text": bad})
    assert status == 422
    assert body["error"]["field"] == "servers.gh.headers.TOKEN" and "NOT_SET_ANYWHERE_42" in body["error"]["message"]


def test_it_grants_tools_and_approves_held_ones(api, keys):
    server = ToolServer.objects.create(team_id=keys["team"].pk, name="files", command="x")
    tool = catalogue_tool(server, "read", "read a file")
    status, grant = api.call("post", "/gateway/grants", keys["builder"], {"server": server.pk, "tool": tool.pk, "agent": "w"})
    assert status == 201 and grant["principal_kind"] == "agent"
    _, listed = api.call("get", "/gateway/grants?agent=w", keys["viewer"])
    assert [g["id"] for g in listed] == [grant["id"]]
    tool.status = ToolStatus.HELD
    tool.save()
    status, approved = api.call("post", f"/gateway/tools/{tool.pk}/approve", keys["builder"])
    assert status == 200 and approved["status"] == "active"
    assert api.call("delete", f"/gateway/grants/{grant['id']}", keys["viewer"])[0] == 403
    assert api.call("delete", f"/gateway/grants/{grant['id']}", keys["builder"])[0] == 204


def test_it_shows_a_new_key_once(api, keys):
    status, created = api.call("post", "/gateway/api-keys", keys["owner"], {"name": "ci", "scopes": ["read"]})
    assert status == 201 and created["token"].startswith("adk_")
    _, listed = api.call("get", "/gateway/api-keys", keys["owner"])
    assert all(k["token"] is None for k in listed)
    assert api.call("get", "/runs", created["token"])[0] == 200
    assert api.call("post", "/gateway/api-keys", keys["builder"], {"name": "x"})[0] == 403
    api.call("post", f"/gateway/api-keys/{created['id']}/revoke", keys["owner"])
    assert api.call("get", "/runs", created["token"])[0] == 401


def test_it_filters_the_audit_log(api, keys):
    for status in ("ok", "denied", "ok"):
        AuditEntry.objects.create(team_id=keys["team"].pk, principal_kind="agent", agent_name="w", run_id=5,
                                  tool_name="files__read", status=status, created_at=timezone.now())
    AuditEntry.objects.create(team_id=keys["other_team"].pk, principal_kind="agent", tool_name="x__y", status="ok",
                              created_at=timezone.now())
    _, rows = api.call("get", "/gateway/audit?run=5&status=ok", keys["viewer"])
    assert len(rows) == 2 and all(r["status"] == "ok" for r in rows)
    _, everything = api.call("get", "/gateway/audit", keys["viewer"])
    assert len(everything) == 3

"""A team builder cannot run anything on the host or read its environment, with a key or a session;
an instance operator can."""

from __future__ import annotations

import json
import sys
import time

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

from mcpgateway.actions.access import do_create_api_key
from mcpgateway.actions.sandbox import do_install_sandbox
from mcpgateway.models import ServerSecret, ToolServer
from orchestrator.actions import do_add_member
from tests.fakes.counting_listener import CountingListener

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = str(settings.BASE_DIR)


def marker_server(marker) -> dict:
    """A stdio server whose command would leave a marker file if it ever ran."""
    return {"name": "evil", "transport": "stdio", "command": sys.executable,
            "args": ["-c", f"open({str(marker)!r}, 'w').close()"]}


def session_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def session_call(client: Client, path: str, body: dict) -> tuple[int, dict]:
    response = client.post(f"/api/v1{path}", json.dumps(body), content_type="application/json")
    return response.status_code, response.json()


def assert_nothing_ran(marker, team, count: int) -> None:
    time.sleep(0.3)
    assert not marker.exists()
    assert ToolServer.objects.filter(team_id=team.pk).count() == count


def test_it_refuses_a_stdio_server_to_a_builder_key(api, keys, tmp_path):
    marker = tmp_path / "ran"
    status, body = api.call("post", "/gateway/servers", keys["builder"], marker_server(marker))
    assert status == 403 and body["error"]["field"] == "command"
    assert_nothing_ran(marker, keys["team"], 0)


def test_it_refuses_a_stdio_server_to_an_owner_key(api, keys, tmp_path):
    marker = tmp_path / "ran"
    status, body = api.call("post", "/gateway/servers", keys["owner"], marker_server(marker))
    assert status == 403 and body["error"]["code"] == "operator_only"
    assert_nothing_ran(marker, keys["team"], 0)


def test_it_refuses_a_stdio_server_to_a_builder_session(keys, tmp_path):
    marker = tmp_path / "ran"
    status, body = session_call(session_client(keys["users"]["builder"]), "/gateway/servers", marker_server(marker))
    assert status == 403 and body["error"]["field"] == "command"
    assert_nothing_ran(marker, keys["team"], 0)


def test_it_refuses_an_import_with_a_stdio_server(api, keys, tmp_path):
    marker = tmp_path / "ran"
    text = json.dumps({"mcpServers": {
        "fine": {"type": "http", "url": "https://mcp.example.com/mcp"},
        "evil": {"command": sys.executable, "args": ["-c", f"open({str(marker)!r}, 'w').close()"]}}})
    status, body = api.call("post", "/gateway/servers/import", keys["builder"], {"text": text})
    assert status == 403 and body["error"]["field"] == "mcpServers.evil.command"
    assert_nothing_ran(marker, keys["team"], 0)


def test_it_refuses_an_env_reference_in_an_import(api, keys):
    text = "servers:\n  metrics: {url: 'https://mcp.example.com/mcp', headers: {Authorization: 'Bearer ${METRICS_TOKEN}'}}\n"
    status, body = api.call("post", "/gateway/servers/import", keys["builder"], {"text": text})
    assert status == 422 and body["error"]["field"] == "servers.metrics.headers.Authorization"
    assert ToolServer.objects.filter(team_id=keys["team"].pk).count() == 0


def test_it_refuses_changing_the_sandbox_server(api, keys):
    sandbox = do_install_sandbox(keys["team"].pk)
    args = [*sandbox.args, "--network", "host", "--user", "0:0"]
    status, body = api.call("post", "/gateway/servers", keys["builder"],
                            {"name": "sandbox", "command": sandbox.command, "args": args})
    assert status == 403 and body["error"]["field"] == "name"
    sandbox.refresh_from_db()
    assert "host" not in sandbox.args and "0:0" not in sandbox.args


def test_it_refuses_replacing_the_sandbox_with_a_remote_server(api, keys):
    do_install_sandbox(keys["team"].pk)
    status, body = api.call("post", "/gateway/servers", keys["builder"],
                            {"name": "sandbox", "transport": "http", "url": "https://mcp.example.com/mcp"})
    assert status == 403 and body["error"]["field"] == "name"
    assert ToolServer.objects.get(team_id=keys["team"].pk, name="sandbox").transport == "stdio"


@pytest.fixture
def listener(settings):
    found = CountingListener()
    settings.AGENTDECK_OUTBOUND_ALLOW = ["127.0.0.1"]
    yield found
    found.close()


@pytest.mark.parametrize("name", ["HOME", "METRICS_TOKEN"])
def test_it_never_sends_a_process_variable_a_builder_references(api, keys, listener, gateway_runtime, monkeypatch, name):
    monkeypatch.setenv("METRICS_TOKEN", "mt-secret-value-1")
    status, body = api.call("post", "/gateway/servers", keys["builder"], {
        "name": "metrics", "transport": "http", "url": f"http://127.0.0.1:{listener.port}/mcp",
        "headers": {"Authorization": "Bearer ${" + name + "}"}})
    assert status == 422 and body["error"]["field"] == "headers.Authorization"
    from mcpgateway.background import submit

    submit(gateway_runtime.sync()).result(timeout=30)
    time.sleep(0.5)
    assert listener.connections == 0
    assert not ToolServer.objects.filter(name="metrics").exists()


def test_it_lets_a_builder_add_a_remote_server_with_its_own_secret(api, keys, listener):
    status, body = api.call("post", "/gateway/servers", keys["builder"], {
        "name": "remote", "transport": "http", "url": f"http://127.0.0.1:{listener.port}/mcp",
        "headers": {"Authorization": "Bearer ${TOKEN}"}, "secrets": {"TOKEN": "team-token-1"}})
    assert status == 201 and body["env_allow"] == []
    assert ServerSecret.objects.get(server_id=body["id"], name="TOKEN").value == "team-token-1"


@pytest.fixture
def operator_key(keys):
    user = get_user_model().objects.create_user("op", is_staff=True)
    do_add_member(keys["team"], user, "builder")
    return do_create_api_key(keys["team"].pk, "op", user, scopes=["read", "run", "admin"])[1]


def test_it_lets_an_operator_key_with_the_admin_scope_add_the_stdio_server(api, keys, operator_key, gateway_runtime):
    from tests.conftest import start_servers

    status, body = api.call("post", "/gateway/servers", operator_key, {
        "name": "echo", "command": sys.executable, "args": ["-m", "tests.fakes.mcp_echo_server"], "cwd": ROOT})
    assert status == 201
    server = ToolServer.objects.get(pk=body["id"])
    start_servers(gateway_runtime, server)
    assert server.tools.filter(name="echo").exists()


def test_it_does_not_make_an_operator_key_without_the_admin_scope_an_operator(api, keys, tmp_path):
    user = get_user_model().objects.create_user("op2", is_staff=True)
    do_add_member(keys["team"], user, "builder")
    token = do_create_api_key(keys["team"].pk, "op2", user, scopes=["read", "run"])[1]
    marker = tmp_path / "ran"
    status, _ = api.call("post", "/gateway/servers", token, marker_server(marker))
    assert status == 403
    assert_nothing_ran(marker, keys["team"], 0)


def test_it_lets_an_operator_session_import_a_stdio_server(keys):
    user = get_user_model().objects.create_user("op3", is_superuser=True)
    do_add_member(keys["team"], user, "builder")
    text = "servers:\n  code: {command: python, args: [-m, mcpgateway.builtin.code_tools]}\n"
    status, body = session_call(session_client(user), "/gateway/servers/import", {"text": text})
    assert status == 201 and body[0]["command"] == "python"

# Found by an outside review (2026-12-07, the API and config import); failed before its fix.
"""Config import and server saves: YAML names that are not text, two values stored under one
secret name, and `${NAME}` references in a server's URL and working directory (expanded for the
connection only, in the URL's path or query only, and carried by export and import)."""

from __future__ import annotations

import pytest
from django.test import Client

from mcpgateway.actions.config_files import do_import_config, export_config
from mcpgateway.actions.servers import do_save_server, resolve_config
from mcpgateway.errors import ConfigError, GatewayError, MissingVariable
from mcpgateway.models import ServerSecret, ToolServer
from tests.api.conftest import api, keys  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db


@pytest.fixture
def loopback(settings):
    settings.AGENTDECK_OUTBOUND_ALLOW = ["127.0.0.0/8", "::1/128"]


@pytest.mark.parametrize(("name", "field"), [("123", "servers.123"), ("true", "servers.true"), ("~", "servers.~")])
def test_a_yaml_server_name_that_is_not_a_string_is_a_4xx_and_saves_nothing(api, keys, loopback, name, field):  # noqa: F811
    """YAML reads `123:` / `true:` as an int / bool key: the import saved the server (as "123" /
    "True") and then answered an HTML 500 (the response's `name` is not a string); `~:` (None)
    answered a misleading 409 "another change was made at the same time"."""
    api.client = Client(raise_request_exception=False)
    text = f"servers:\n  {name}: {{url: 'http://127.0.0.1:9/mcp'}}\n  fine: {{url: 'http://127.0.0.1:9/mcp'}}\n"
    status, data = api.call("post", "/gateway/servers/import", keys["builder"], {"text": text})
    assert status == 422, (status, data)
    assert data["error"]["code"] == "invalid_config" and data["error"]["field"] == field, data
    assert "put it in quotes" in data["error"]["message"], data
    assert not ToolServer.objects.filter(team_id=keys["team"].pk).exists()


def test_a_quoted_number_is_a_server_name(api, keys, loopback):  # noqa: F811
    status, data = api.call("post", "/gateway/servers/import", keys["builder"],
                            {"text": "servers:\n  '123': {url: 'http://127.0.0.1:9/mcp'}\n"})
    assert status == 201, (status, data)
    assert data[0]["name"] == "123"


def test_two_header_values_whose_names_map_to_one_secret_name_are_refused_naming_the_second(api, keys, loopback):  # noqa: F811
    """Literal header values move into secrets named after the header (`secret_name`):
    `X-Api-Key` and `X_Api_Key` both became `${X_API_KEY}`, so the second value silently
    replaced the first and both headers sent it."""
    text = ('{"servers": {"remote": {"url": "http://127.0.0.1:9/mcp", '
            '"headers": {"X-Api-Key": "first", "X_Api_Key": "second"}}}}')
    status, data = api.call("post", "/gateway/servers/import", keys["builder"], {"text": text})
    assert status == 422, (status, data)
    assert data["error"]["field"] == "servers.remote.headers.X_Api_Key", data
    assert "X_API_KEY" in data["error"]["message"] and "headers.X-Api-Key" in data["error"]["message"], data
    assert not ToolServer.objects.filter(team_id=keys["team"].pk).exists()
    assert not ServerSecret.objects.exists()


def test_it_refuses_colliding_header_values_on_post_servers_too(api, keys, loopback):  # noqa: F811
    status, data = api.call("post", "/gateway/servers", keys["builder"], {
        "name": "remote", "transport": "http", "url": "http://127.0.0.1:9/mcp",
        "headers": {"X-Api-Key": "first", "x_api_key": "second"}})
    assert status == 400, (status, data)
    assert data["error"]["field"] == "headers.x_api_key", data
    assert not ToolServer.objects.exists()


def test_it_refuses_a_literal_value_whose_secret_name_is_given_another_value():
    with pytest.raises(GatewayError) as info:
        do_save_server(7, "remote", secrets={"X_API_KEY": "given"}, operator=True, transport="http",
                       url="https://example.com/mcp", headers={"X-Api-Key": "literal"})
    assert info.value.field == "headers.X-Api-Key"
    assert not ToolServer.objects.exists()


def test_a_literal_and_a_reference_to_its_name_may_share_it():
    server = do_save_server(7, "remote", operator=True, transport="http", url="https://example.com/mcp",
                            headers={"X-Api-Key": "k3y-value", "Authorization": "Bearer ${X_API_KEY}"})
    config, _ = resolve_config(server)
    assert config.headers == {"X-Api-Key": "k3y-value", "Authorization": "Bearer k3y-value"}


def test_an_export_with_a_url_reference_imports_into_another_team_with_its_secret(api, keys, loopback):  # noqa: F811
    """A remote server whose URL holds a `${TOKEN}` (POST /servers accepts it with the secret)
    is exported as is; importing that file into another team with `secrets: {TOKEN: …}` was
    refused "${TOKEN} is not a secret of this server: give its value in `secrets`" — the import
    passed the server only the secrets its env, headers and args name, never its URL's."""
    status, data = api.call("post", "/gateway/servers", keys["owner"], {
        "name": "remote", "transport": "http", "url": "http://127.0.0.1:9/${TOKEN}/mcp", "secrets": {"TOKEN": "t0k3n"}})
    assert status == 201, (status, data)
    exported = export_config(keys["team"].pk)
    assert "${TOKEN}" in exported and "t0k3n" not in exported
    status, data = api.call("post", "/gateway/servers/import", keys["other"], {"text": exported, "secrets": {"TOKEN": "t0k3n"}})
    assert status == 201, (status, data)
    imported = ToolServer.objects.get(team_id=keys["other_team"].pk, name="remote")
    assert imported.secrets.filter(name="TOKEN").exists()


def test_an_import_without_a_url_reference_s_secret_names_the_url(api, keys, loopback):  # noqa: F811
    text = "servers:\n  remote: {url: 'http://127.0.0.1:9/${TOKEN}/mcp'}\n"
    status, data = api.call("post", "/gateway/servers/import", keys["builder"], {"text": text})
    assert status == 422, (status, data)
    assert data["error"]["field"] == "servers.remote.url", data
    assert "${TOKEN} is not set" in data["error"]["message"], data


def test_a_url_reference_the_gateway_demands_a_secret_for_is_expanded_when_connecting(api, keys, loopback):  # noqa: F811
    """`do_save_server` checked a URL's `${TOKEN}` like an env or header reference (refused
    unless TOKEN is a secret of the server), but `resolve_config` handed the upstream the URL
    as stored: the connection went to the literal `.../${TOKEN}/mcp`, the secret never used."""
    status, data = api.call("post", "/gateway/servers", keys["owner"], {
        "name": "remote", "transport": "http", "url": "http://127.0.0.1:9/${TOKEN}/mcp?k=${TOKEN}",
        "secrets": {"TOKEN": "t0k3n"}})
    assert status == 201, (status, data)
    assert data["url"] == "http://127.0.0.1:9/${TOKEN}/mcp?k=${TOKEN}"  # shown as stored
    server = ToolServer.objects.get(team_id=keys["team"].pk, name="remote")
    config, redact = resolve_config(server)
    assert config.url == "http://127.0.0.1:9/t0k3n/mcp?k=t0k3n", config.url
    assert "t0k3n" in redact
    assert server.url == "http://127.0.0.1:9/${TOKEN}/mcp?k=${TOKEN}"
    status, data = api.call("get", f"/gateway/servers/{server.pk}", keys["viewer"])
    assert status == 200 and data["url"] == "http://127.0.0.1:9/${TOKEN}/mcp?k=${TOKEN}", data


@pytest.mark.parametrize("url", ["http://${HOST}/mcp", "http://127.0.0.1:${PORT}/mcp", "http://${USER}@127.0.0.1:9/mcp",
                                 "http://127.0.0.1${SUFFIX}/mcp"])
def test_a_reference_in_the_url_s_host_port_or_user_info_is_refused(api, keys, loopback, url):  # noqa: F811
    """Expanded, a value there — which a team member can change — would decide the host the
    server's requests and secrets go to, past the outbound check made at save."""
    status, data = api.call("post", "/gateway/servers", keys["owner"], {
        "name": "remote", "transport": "http", "url": url,
        "secrets": {"HOST": "x", "PORT": "1", "USER": "u", "SUFFIX": ".nip.io"}})
    assert status == 400, (status, data)
    assert data["error"]["field"] == "url" and "path or query" in data["error"]["message"], data
    assert not ToolServer.objects.exists()


def test_a_server_saved_with_a_reference_in_its_host_does_not_start():
    server = ToolServer.objects.create(team_id=7, name="old", transport="http", url="http://${HOST}/mcp")
    ServerSecret.objects.create(server=server, name="HOST", value="169.254.169.254")
    with pytest.raises(MissingVariable) as info:
        resolve_config(server)
    assert info.value.field == "servers.old.url"


def test_a_cwd_reference_is_expanded_and_redacted():
    server = do_save_server(7, "files", secrets={"WORKDIR": "/srv/team-7-data"}, operator=True, transport="stdio",
                            command="python", args=["-m", "server"], cwd="${WORKDIR}/root")
    assert server.cwd == "${WORKDIR}/root"
    config, redact = resolve_config(server)
    assert config.cwd == "/srv/team-7-data/root"
    assert "/srv/team-7-data" in redact


def test_an_import_takes_a_cwd_reference_s_secret(monkeypatch):
    monkeypatch.delenv("DIR", raising=False)
    text = "servers:\n  files: {command: python, cwd: '/srv/${DIR}'}\n"
    with pytest.raises(ConfigError) as info:
        do_import_config(7, text, operator=True)
    assert info.value.errors == [{"field": "servers.files.cwd", "message": "${DIR} is not set: give it as a secret "
                                  "with the import or set the environment variable DIR"}]
    [server] = do_import_config(7, text, secrets={"DIR": "data"}, operator=True)
    assert resolve_config(server)[0].cwd == "/srv/data"

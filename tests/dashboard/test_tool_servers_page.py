"""Adding, testing, restarting, disabling and removing tool servers from the tools page,
within the user's authority (stdio servers are for instance operators)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.test import Client

from mcpgateway.actions.access import do_grant
from mcpgateway.dispatch import Gateway
from mcpgateway.models import ToolServer
from mcpgateway.types import Principal, ToolInvocation


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def builder(team, teammate):
    team.memberships.filter(user=teammate).update(role="builder")
    return teammate


@pytest.fixture
def operator(team, owner):
    owner.is_staff = True
    owner.save()
    return owner


@pytest.fixture
def http_echo(outbound_allows_loopback):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = ("import uvicorn\nfrom tests.fakes.mcp_echo_server import build_server\n"
            f"uvicorn.run(build_server().streamable_http_app(json_response=True), host='127.0.0.1', port={port}, "
            "log_level='warning')")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=settings.BASE_DIR)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "the HTTP echo server did not start"
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}/mcp"
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # a client still holds a streaming connection open
        proc.kill()
        proc.wait(timeout=10)


def pid_of(team_id: int) -> str:
    result = async_to_sync(Gateway(team_id).call_tool)(ToolInvocation(Principal(team_id, agent="a"), "echo__pid", {}))
    assert not result.is_error, result.content
    return result.content


def test_it_lets_a_builder_add_a_remote_server_and_test_it(team, builder, http_echo, gateway_runtime):
    client = login(builder)

    added = client.post("/tools/servers/new/", {"name": "remote", "transport": "http", "url": http_echo,
                                                 "headers": "X-Token=s3cret-value", "enabled": "on"})

    server = ToolServer.objects.get(name="remote")
    assert added.status_code == 302 and added["Location"] == f"/tools/servers/{server.pk}/"
    assert server.headers == {"X-Token": "${X_TOKEN}"}  # the literal went to the encrypted secrets
    tested = client.post(f"/tools/servers/{server.pk}/test/", follow=True).content.decode()
    assert 'id="probe-health">Up' in tested and "remote__echo" in tested


def test_it_refuses_a_stdio_server_to_a_builder(team, builder):
    response = login(builder).post("/tools/servers/new/", {"name": "shell", "transport": "stdio", "command": "bash",
                                                           "enabled": "on"})

    assert response.status_code == 403 and "reserved to instance operators" in response.content.decode()
    assert not ToolServer.objects.exists()
    assert 'name="command"' not in login(builder).get("/tools/servers/new/").content.decode()


def test_it_lets_an_operator_add_edit_restart_disable_and_remove_a_stdio_server(team, operator, gateway_runtime):
    client = login(operator)
    added = client.post("/tools/servers/new/", {
        "name": "echo", "transport": "stdio", "command": sys.executable, "args": "-m\ntests.fakes.mcp_echo_server",
        "cwd": str(settings.BASE_DIR), "enabled": "on", "call_timeout_s": "30"})
    server = ToolServer.objects.get(name="echo")
    assert added.status_code == 302 and server.args == ["-m", "tests.fakes.mcp_echo_server"]
    tested = client.post(f"/tools/servers/{server.pk}/test/", follow=True).content.decode()
    assert 'id="probe-health">Up' in tested
    do_grant(server, agent="a")

    edited = client.post(f"/tools/servers/{server.pk}/edit/", {
        "transport": "stdio", "command": sys.executable, "args": "-m\ntests.fakes.mcp_echo_server",
        "cwd": str(settings.BASE_DIR), "description": "echoes", "enabled": "on", "call_timeout_s": "20"})
    assert edited.status_code == 302
    server.refresh_from_db()
    assert (server.description, server.call_timeout_s) == ("echoes", 20)

    client.post(f"/tools/servers/{server.pk}/test/")
    before = pid_of(team.pk)
    assert client.post(f"/tools/servers/{server.pk}/restart/").status_code == 302
    assert pid_of(team.pk) != before  # a new process

    client.post(f"/tools/servers/{server.pk}/enabled/", {"enabled": "0"})
    server.refresh_from_db()
    assert not server.enabled and server.health == "stopped"
    assert 'name="enabled" value="1"' in client.get("/tools/health/").content.decode()

    asked = client.post(f"/tools/servers/{server.pk}/delete/")
    assert asked.status_code == 200 and ToolServer.objects.filter(pk=server.pk).exists()
    assert client.post(f"/tools/servers/{server.pk}/delete/", {"confirm": "yes"}).status_code == 302
    assert not ToolServer.objects.filter(pk=server.pk).exists()


def test_it_lets_a_viewer_see_but_not_test_or_change_a_server(team, owner, teammate):
    server = ToolServer.objects.create(team_id=team.pk, name="files", transport="http", url="https://x.example/mcp",
                                       enabled=False)
    client = login(teammate)

    assert client.get(f"/tools/servers/{server.pk}/").status_code == 200
    for url in ("/tools/servers/new/", f"/tools/servers/{server.pk}/edit/"):
        assert client.get(url).status_code == 403
    for url in (f"/tools/servers/{server.pk}/restart/", f"/tools/servers/{server.pk}/enabled/",
                f"/tools/servers/{server.pk}/delete/", f"/tools/servers/{server.pk}/test/"):
        assert client.post(url, {"confirm": "yes", "enabled": "1"}).status_code == 403
    server.refresh_from_db()
    assert not server.enabled
    assert "Remove…" not in client.get("/tools/health/").content.decode()


def test_it_never_connects_on_a_get(team, owner, teammate, gateway_runtime):
    """A GET (a viewer, or an <img> on another site) shows the stored health only: no process starts."""
    server = ToolServer.objects.create(team_id=team.pk, name="echo", transport="stdio", command=sys.executable,
                                       args=["-m", "tests.fakes.mcp_echo_server"], cwd=str(settings.BASE_DIR))

    page = login(teammate).get(f"/tools/servers/{server.pk}/")

    assert page.status_code == 200 and 'id="probe-health">Unknown' in page.content.decode()
    assert 'id="test-server"' not in page.content.decode()
    server.refresh_from_db()
    assert server.health == "unknown" and not server.tools.exists()
    assert f"s{server.pk}" not in gateway_runtime._configs  # this process started nothing


def test_it_lets_a_builder_test_a_server_by_post_only(team, builder, http_echo, gateway_runtime):
    server = ToolServer.objects.create(team_id=team.pk, name="remote", transport="http", url=http_echo)
    client = login(builder)

    assert client.get(f"/tools/servers/{server.pk}/test/").status_code == 405
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(builder)
    assert strict.post(f"/tools/servers/{server.pk}/test/").status_code == 403  # no CSRF token
    tested = client.post(f"/tools/servers/{server.pk}/test/")

    assert tested.status_code == 302 and tested["Location"] == f"/tools/servers/{server.pk}/"
    page = client.get(tested["Location"]).content.decode()
    assert 'id="probe-health">Up' in page and "remote__echo" in page and 'id="test-server"' in page


def _stdio_echo(team, **fields) -> ToolServer:
    return ToolServer.objects.create(team_id=team.pk, name="echo", transport="stdio", command=sys.executable,
                                     args=["-m", "tests.fakes.mcp_echo_server"], cwd=str(settings.BASE_DIR), **fields)


def test_it_refuses_a_builder_enabling_a_stdio_server_an_operator_disabled(team, builder):
    server = _stdio_echo(team, enabled=False, health="stopped")

    response = login(builder).post(f"/tools/servers/{server.pk}/enabled/", {"enabled": "1"})

    assert response.status_code == 403 and "reserved to instance operators" in response.content.decode()
    assert "stdio server" in response.content.decode()
    server.refresh_from_db()
    assert not server.enabled and server.health == "stopped"


def test_it_refuses_a_builder_enabling_a_server_that_reads_the_environment(team, builder):
    server = ToolServer.objects.create(team_id=team.pk, name="remote", transport="http", url="https://x.example/mcp",
                                       headers={"Authorization": "${HOST_TOKEN}"}, env_allow=["HOST_TOKEN"],
                                       enabled=False)

    response = login(builder).post(f"/tools/servers/{server.pk}/enabled/", {"enabled": "1"})

    assert response.status_code == 403 and "environment variables" in response.content.decode()
    server.refresh_from_db()
    assert not server.enabled


def test_it_refuses_a_builder_restarting_a_stdio_server(team, builder, gateway_runtime):
    server = _stdio_echo(team)

    response = login(builder).post(f"/tools/servers/{server.pk}/restart/")

    assert response.status_code == 403 and "stdio server" in response.content.decode()
    server.refresh_from_db()
    assert server.health == "unknown"  # never marked starting: nothing was restarted


def test_it_lets_a_builder_disable_a_stdio_server_and_enable_a_remote_one(team, builder):
    stdio = _stdio_echo(team)
    remote = ToolServer.objects.create(team_id=team.pk, name="remote", transport="http", url="https://x.example/mcp",
                                       enabled=False)
    client = login(builder)

    assert client.post(f"/tools/servers/{stdio.pk}/enabled/", {"enabled": "0"}).status_code == 302
    assert client.post(f"/tools/servers/{remote.pk}/enabled/", {"enabled": "1"}).status_code == 302
    stdio.refresh_from_db()
    remote.refresh_from_db()
    assert not stdio.enabled and remote.enabled


def test_it_lets_an_operator_enable_a_stdio_server(team, operator):
    server = _stdio_echo(team, enabled=False, health="stopped")

    assert login(operator).post(f"/tools/servers/{server.pk}/enabled/", {"enabled": "1"}).status_code == 302
    server.refresh_from_db()
    assert server.enabled

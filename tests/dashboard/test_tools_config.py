"""Importing and exporting the team's tool servers from the tools pages."""

from __future__ import annotations

import pytest
from django.test import Client

from mcpgateway.models import ServerSecret, ToolServer

pytestmark = pytest.mark.django_db

CONFIG = """
servers:
  github:
    command: npx
    args: [-y, "@modelcontextprotocol/server-github"]
    env: {GITHUB_TOKEN: "${GH_TOKEN_FOR_TEST}"}
  remote: {url: "https://mcp.example.com/mcp", transport: http}
"""


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def operator(owner):
    """The team's owner is also an instance operator: stdio servers are the operators' to add."""
    owner.is_staff = True
    owner.save(update_fields=["is_staff"])
    return owner


def test_it_imports_servers_with_their_secrets(team, operator):
    response = login(operator).post("/tools/config/import/", {"config": CONFIG, "secrets": "GH_TOKEN_FOR_TEST=ghp_secret\n"})

    assert response.status_code == 302
    names = sorted(ToolServer.objects.filter(team_id=team.pk).values_list("name", flat=True))
    assert names == ["github", "remote"]
    secret = ServerSecret.objects.get(server__name="github")
    assert secret.name == "GH_TOKEN_FOR_TEST" and secret.value == "ghp_secret"


def test_it_names_every_bad_field_and_imports_nothing(team, owner):
    bad = "servers:\n  ok: {command: npx}\n  broken: {url: 'ftp://nope', transport: http}\n  needs: {command: x, env: {T: '${MISSING_FOR_TEST}'}}\n"

    response = login(owner).post("/tools/config/import/", {"config": bad, "secrets": ""})

    page = response.content.decode()
    assert response.status_code == 400
    assert "servers.broken" in page
    assert not ToolServer.objects.exists()


def test_it_names_a_missing_secret(team, operator):
    response = login(operator).post("/tools/config/import/", {"config": CONFIG, "secrets": ""})

    page = response.content.decode()
    assert response.status_code == 400
    assert "servers.github.env.GITHUB_TOKEN" in page and "GH_TOKEN_FOR_TEST" in page
    assert CONFIG.strip().splitlines()[1].strip() in page  # the pasted file is kept for fixing


def test_it_refuses_a_malformed_secrets_line(team, owner):
    response = login(owner).post("/tools/config/import/", {"config": CONFIG, "secrets": "just-a-value"})

    assert response.status_code == 400
    assert "write NAME=value" in response.content.decode()


def test_it_exports_references_not_secrets(team, operator):
    login(operator).post("/tools/config/import/", {"config": CONFIG, "secrets": "GH_TOKEN_FOR_TEST=ghp_secret"})
    client = login(operator)

    page = client.get("/tools/config/").content.decode()
    claude = client.get("/tools/config/export/?style=claude")

    assert "${GH_TOKEN_FOR_TEST}" in page and "ghp_secret" not in page
    assert claude["Content-Disposition"] == 'attachment; filename="mcp_config.json"'
    assert '"mcpServers"' in claude.content.decode() and "ghp_secret" not in claude.content.decode()


def test_it_refuses_a_stdio_server_from_a_team_owner_who_is_no_operator(team, owner):
    response = login(owner).post("/tools/config/import/", {"config": CONFIG, "secrets": "GH_TOKEN_FOR_TEST=ghp_secret"})

    assert response.status_code == 403
    assert "servers.github.command" in response.content.decode()
    assert not ToolServer.objects.exists()


def test_it_lets_viewers_export_but_not_import(team, teammate):
    client = login(teammate)

    assert client.get("/tools/config/").status_code == 200
    assert client.post("/tools/config/import/", {"config": CONFIG, "secrets": "GH_TOKEN_FOR_TEST=x"}).status_code == 403
    assert not ToolServer.objects.exists()

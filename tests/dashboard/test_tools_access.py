"""Grants per agent and per API key, and API keys (token shown once) on the tools pages."""

from __future__ import annotations

import pytest
from django.test import Client

from mcpgateway.actions.access import do_create_api_key, do_grant
from mcpgateway.models import ApiKey, Grant, Tool, ToolServer
from tests.conftest import scripted

pytestmark = pytest.mark.django_db


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def server(team) -> ToolServer:
    server = ToolServer.objects.create(team_id=team.pk, name="files", command="true")
    for name in ("read", "write"):
        Tool.objects.create(server=server, name=name, description=f"{name} a file")
    return server


@pytest.fixture
def key(team, owner) -> ApiKey:
    return do_create_api_key(team.pk, "ci", owner)[0]


def test_it_grants_an_agent_a_whole_server(team, owner, server):
    scripted(team, "coder")

    response = login(owner).post("/tools/access/grants/", {"principal": "agent", "agent": "coder",
                                                           "target": f"server:{server.pk}"})

    assert response.status_code == 302
    grant = Grant.objects.get()
    assert (grant.principal_kind, grant.agent_name, grant.server, grant.tool) == ("agent", "coder", server, None)
    assert "files__*" in login(owner).get("/tools/access/").content.decode()


def test_it_grants_an_api_key_one_tool_with_approval_and_a_rate(owner, server, key):
    tool = server.tools.get(name="write")

    login(owner).post("/tools/access/grants/", {"principal": "api_key", "api_key": key.pk, "target": f"tool:{tool.pk}",
                                                "require_approval": "on", "calls_per_minute": "5"})

    grant = Grant.objects.get()
    assert (grant.api_key, grant.tool, grant.require_approval, grant.calls_per_minute) == (key, tool, True, 5)


def test_it_names_what_is_wrong_with_a_grant(team, owner, server):
    client = login(owner)

    no_target = client.post("/tools/access/grants/", {"principal": "team", "target": ""})
    unknown_agent = client.post("/tools/access/grants/", {"principal": "agent", "agent": "ghost",
                                                          "target": f"server:{server.pk}"})
    bad_rate = client.post("/tools/access/grants/", {"principal": "team", "target": f"server:{server.pk}",
                                                     "calls_per_minute": "0"})

    assert no_target.status_code == 400 and "choose a server or a tool" in no_target.content.decode()
    assert unknown_agent.status_code == 400 and "choose an agent" in unknown_agent.content.decode()
    assert bad_rate.status_code == 400 and "at least 1" in bad_rate.content.decode()
    assert not Grant.objects.exists()


def test_it_revokes_a_grant(owner, server):
    grant = do_grant(server, agent="coder")

    login(owner).post(f"/tools/access/grants/{grant.pk}/revoke/")

    assert not Grant.objects.exists()


def test_it_shows_a_new_keys_token_once_then_only_its_prefix(team, owner):
    client = login(owner)

    created = client.post("/tools/access/keys/", {"name": "deploy bot", "scopes": ["read", "run"]}, follow=True)

    key = ApiKey.objects.get(name="deploy bot")
    page = created.content.decode()
    token = page.split('id="new-token">')[1].split("<")[0]
    assert token.startswith("adk_") and ApiKey.hash_token(token) == key.hashed
    assert created["Cache-Control"] == "no-store"
    listing = client.get("/tools/access/").content.decode()
    assert token not in listing
    assert f"{key.prefix}…" in listing
    assert key.scopes == ["read", "run"] and key.user == owner


def test_it_refuses_a_key_without_a_name_or_scopes(team, owner):
    client = login(owner)

    assert client.post("/tools/access/keys/", {"name": "", "scopes": ["read"]}).status_code == 400
    assert client.post("/tools/access/keys/", {"name": "x"}).status_code == 400
    assert not ApiKey.objects.exists()


def test_it_revokes_a_key(owner, key):
    login(owner).post(f"/tools/access/keys/{key.pk}/revoke/", {"confirm": "yes"})

    key.refresh_from_db()
    assert key.revoked_at is not None


def test_it_lets_viewers_see_grants_but_not_keys_and_change_nothing(teammate, server, key):
    grant = do_grant(server, agent="coder")
    client = login(teammate)

    page = client.get("/tools/access/").content.decode()
    assert "files__*" in page and key.prefix not in page  # keys are listed to owners only, as in the API
    assert "/revoke/" not in page and "Add grant" not in page and "Create key" not in page
    assert client.post("/tools/access/grants/", {"principal": "team", "target": f"server:{server.pk}"}).status_code == 403
    assert client.post(f"/tools/access/grants/{grant.pk}/revoke/").status_code == 403
    assert client.post("/tools/access/keys/", {"name": "mine", "scopes": ["read"]}).status_code == 403
    assert client.post(f"/tools/access/keys/{key.pk}/revoke/").status_code == 403
    assert Grant.objects.count() == 1 and ApiKey.objects.count() == 1
    key.refresh_from_db()
    assert key.revoked_at is None


def test_it_lets_builders_grant_but_not_create_or_revoke_keys(team, teammate, server, key):
    """One policy for one action: the API reserves keys to owners, and so does the dashboard."""
    team.memberships.filter(user=teammate).update(role="builder")
    client = login(teammate)

    assert client.post("/tools/access/grants/", {"principal": "team", "target": f"server:{server.pk}"}).status_code == 302
    assert client.post("/tools/access/keys/", {"name": "mine", "scopes": ["read"]}).status_code == 403
    assert client.post(f"/tools/access/keys/{key.pk}/revoke/").status_code == 403
    key.refresh_from_db()
    assert ApiKey.objects.count() == 1 and key.revoked_at is None

"""The tools page: server health, the catalogue with schemas, enabling tools, approving held ones."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from mcpgateway.models import Tool, ToolServer, ToolStatus, definition_hash
from orchestrator.actions import do_add_member, do_create_team

pytestmark = pytest.mark.django_db


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def catalogue_tool(server: ToolServer, name: str, description: str, schema: dict | None = None) -> Tool:
    schema = schema or {"type": "object", "properties": {"path": {"type": "string"}}}
    definition = {"description": description, "input_schema": schema, "output_schema": None}
    digest = definition_hash(definition)
    return Tool.objects.create(server=server, name=name, description=description, input_schema=schema,
                               approved_hash=digest, approved_definition=definition, current_hash=digest)


@pytest.fixture
def server(team) -> ToolServer:
    server = ToolServer.objects.create(team_id=team.pk, name="files", command="true", health="down",
                                       health_error="exited with <code 1>", restarts=3)
    catalogue_tool(server, "read", "read a file")
    return server


@pytest.fixture
def held(server) -> Tool:
    tool = catalogue_tool(server, "write", "write a file")
    Tool.objects.filter(pk=tool.pk).update(status=ToolStatus.HELD, description="write a file, then email it away",
                                           current_hash="changed")
    tool.refresh_from_db()
    return tool


@pytest.fixture
def builder(team):
    user = get_user_model().objects.create_user("bea", password="pw-bea-12345")
    do_add_member(team, user, "builder")
    return user


def test_it_shows_each_servers_health_with_its_error_and_restarts(server, teammate):
    partial = login(teammate).get("/tools/health/").content.decode()

    assert "files" in partial and "Down" in partial
    assert "exited with &lt;code 1&gt;" in partial
    assert "<td>3</td>" in partial


def test_it_polls_the_health_partial(server, teammate):
    page = login(teammate).get("/tools/").content.decode()

    assert 'hx-get="/tools/health/"' in page and 'hx-trigger="every 5s"' in page


def test_it_lists_tools_with_their_input_schemas_escaped(server, owner):
    catalogue_tool(server, "odd", "odd <b>tool</b>", {"type": "object", "description": "<script>x</script>"})

    page = login(owner).get("/tools/").content.decode()

    assert "files__read" in page and "files__odd" in page
    assert "&quot;path&quot;" in page  # the schema, as pretty JSON
    assert "<script>x" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert "odd &lt;b&gt;tool&lt;/b&gt;" in page


def test_it_shows_what_changed_in_a_held_tool(held, owner):
    page = login(owner).get("/tools/").content.decode()

    assert "Held for re-approval" in page
    assert "write a file, then email it away" in page
    assert f"/tools/tool/{held.pk}/approve/" in page


def test_it_reactivates_a_held_tool_when_its_new_definition_is_approved(held, builder):
    response = login(builder).post(f"/tools/tool/{held.pk}/approve/")

    assert response.status_code == 302
    held.refresh_from_db()
    assert held.status == ToolStatus.ACTIVE
    assert held.approved_definition["description"] == "write a file, then email it away"
    assert "Held for re-approval" not in login(builder).get("/tools/").content.decode()


def test_it_disables_and_enables_a_tool(server, owner):
    tool = server.tools.get(name="read")
    client = login(owner)

    client.post(f"/tools/tool/{tool.pk}/enabled/", {"enabled": "0"})
    tool.refresh_from_db()
    assert tool.enabled is False

    client.post(f"/tools/tool/{tool.pk}/enabled/", {"enabled": "1"})
    tool.refresh_from_db()
    assert tool.enabled is True


def test_it_lets_viewers_change_nothing(held, server, teammate):
    client = login(teammate)
    tool = server.tools.get(name="read")

    assert client.post(f"/tools/tool/{held.pk}/approve/").status_code == 403
    assert client.post(f"/tools/tool/{tool.pk}/enabled/", {"enabled": "0"}).status_code == 403
    page = client.get("/tools/").content.decode()
    assert "/approve/" not in page and "/enabled/" not in page
    held.refresh_from_db()
    tool.refresh_from_db()
    assert held.status == ToolStatus.HELD and tool.enabled


def test_it_does_not_touch_other_teams_tools(held, outsider):
    do_create_team("Elsewhere", outsider)

    response = login(outsider).post(f"/tools/tool/{held.pk}/approve/")

    assert response.status_code == 404
    held.refresh_from_db()
    assert held.status == ToolStatus.HELD

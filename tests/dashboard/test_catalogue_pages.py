"""The catalogue pages: builders add servers from templates, operators manage the templates,
and the dashboard's import refuses stdio servers to team members."""

from __future__ import annotations

import sys

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from mcpgateway.actions.templates import do_save_template
from mcpgateway.models import ServerSecret, ServerTemplate, ToolServer
from orchestrator.actions import do_add_member

pytestmark = pytest.mark.django_db

TEMPLATE = {
    "name": "files", "description": "Team folders", "command": sys.executable,
    "args": ["-m", "files_server", "{{root}}"], "env": {"TOKEN": "{{token}}"},
    "parameters": [{"name": "root", "kind": "path", "path_prefixes": ["/srv/teams"], "label": "Root folder"},
                   {"name": "token", "kind": "secret", "label": "Token"}],
}


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def builder(team):
    user = get_user_model().objects.create_user("builder")
    do_add_member(team, user, "builder")
    return user


@pytest.fixture
def operator(team):
    user = get_user_model().objects.create_user("operator", is_staff=True)
    do_add_member(team, user, "viewer")
    return user


@pytest.fixture
def template() -> ServerTemplate:
    return do_save_template(TEMPLATE, operator=True)


def test_it_lists_the_catalogue_with_an_add_link_for_builders(builder, template):
    page = login(builder).get("/tools/catalogue/").content.decode()
    assert "files" in page and f"/tools/catalogue/{template.pk}/add/" in page


def test_it_generates_the_form_with_a_password_input_for_secrets(builder, template):
    page = login(builder).get(f"/tools/catalogue/{template.pk}/add/").content.decode()
    assert 'type="password" name="param-token"' in page and 'name="param-root"' in page


def test_it_installs_a_server_from_the_form(builder, team, template):
    response = login(builder).post(f"/tools/catalogue/{template.pk}/add/",
                                   {"name": "our-files", "param-root": "/srv/teams/acme", "param-token": "tok-9"})
    assert response.status_code == 302
    server = ToolServer.objects.get(team_id=team.pk, name="our-files")
    assert server.args[-1] == "/srv/teams/acme" and ServerSecret.objects.get(server=server).value == "tok-9"


def test_it_names_the_bad_parameter_and_never_shows_the_secret_back(builder, team, template):
    response = login(builder).post(f"/tools/catalogue/{template.pk}/add/",
                                   {"name": "our-files", "param-root": "/etc", "param-token": "tok-9"})
    page = response.content.decode()
    assert response.status_code == 422 and "parameters.root" in page and "tok-9" not in page
    assert not ToolServer.objects.filter(team_id=team.pk).exists()


def test_it_edits_only_the_parameters_keeping_an_empty_secret(builder, team, template):
    client = login(builder)
    client.post(f"/tools/catalogue/{template.pk}/add/", {"name": "f", "param-root": "/srv/teams/a", "param-token": "tok-9"})
    server = ToolServer.objects.get(team_id=team.pk, name="f")
    page = client.get(f"/tools/catalogue/server/{server.pk}/").content.decode()
    assert "tok-9" not in page
    client.post(f"/tools/catalogue/server/{server.pk}/", {"param-root": "/srv/teams/b", "param-token": ""})
    server.refresh_from_db()
    assert server.args[-1] == "/srv/teams/b" and server.command == sys.executable
    assert ServerSecret.objects.get(server=server).value == "tok-9"


def test_it_keeps_the_manage_page_from_builders(builder, template):
    client = login(builder)
    assert client.get("/tools/catalogue/manage/").status_code == 403
    assert client.post("/tools/catalogue/manage/save/", {"template": "name: x\ncommand: sh\n"}).status_code == 403
    assert list(ServerTemplate.objects.values_list("name", flat=True)) == ["files"]


def test_it_lets_an_operator_save_and_remove_a_template(operator):
    client = login(operator)
    response = client.post("/tools/catalogue/manage/save/", {"template": "name: lint\ncommand: ruff\nargs: [server]\n"})
    assert response.status_code == 302
    lint = ServerTemplate.objects.get(name="lint")
    client.post(f"/tools/catalogue/manage/{lint.pk}/delete/")
    assert not ServerTemplate.objects.filter(name="lint").exists()


def test_it_names_the_field_of_a_bad_template(operator):
    response = login(operator).post("/tools/catalogue/manage/save/", {"template": "name: lint\ncommand: ruff\nargs: ['{{x}}']\n"})
    assert response.status_code == 422 and "not a declared parameter" in response.content.decode()


def test_it_refuses_a_stdio_import_to_a_builder(builder, team, tmp_path):
    marker = tmp_path / "ran"
    text = f"servers:\n  evil: {{command: {sys.executable}, args: [-c, \"open('{marker}', 'w')\"]}}\n"
    response = login(builder).post("/tools/config/import/", {"config": text, "secrets": ""})
    assert response.status_code == 403 and "servers.evil.command" in response.content.decode()
    assert not marker.exists() and not ToolServer.objects.filter(team_id=team.pk).exists()

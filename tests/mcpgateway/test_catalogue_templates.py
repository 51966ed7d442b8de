"""Server templates: operators write them, teams install them with checked parameters only."""

from __future__ import annotations

import sys

import pytest

from mcpgateway.actions.servers import resolve_config
from mcpgateway.actions.templates import (
    do_delete_template,
    do_install_template,
    do_save_template,
    do_update_installed,
)
from mcpgateway.errors import GatewayError, NotOperator, ParameterError
from mcpgateway.models import ServerSecret, ServerTemplate, ToolServer

pytestmark = pytest.mark.django_db

FILES = {
    "name": "files", "description": "Files under /srv/teams", "command": sys.executable,
    "args": ["-m", "files_server", "--root", "{{root}}", "--depth", "{{depth}}"],
    "env": {"API_TOKEN": "{{token}}", "REGION": "{{region}}", "PROXY": "${HTTPS_PROXY}"},
    "env_allow": ["HTTPS_PROXY"],
    "parameters": [
        {"name": "root", "kind": "path", "path_prefixes": ["/srv/teams"]},
        {"name": "depth", "kind": "integer", "default": "3"},
        {"name": "token", "kind": "secret"},
        {"name": "region", "pattern": "[a-z]{2}-[a-z]+", "required": False},
    ],
}


@pytest.fixture
def files() -> ServerTemplate:
    return do_save_template(FILES, operator=True)


def install(template: ServerTemplate, **values) -> ToolServer:
    return do_install_template(1, template, "my-files", {"root": "/srv/teams/a", "token": "tok-1", **values})


def test_it_refuses_a_template_to_a_team_member():
    with pytest.raises(NotOperator):
        do_save_template(FILES, operator=False)
    assert not ServerTemplate.objects.exists()


def test_it_refuses_an_undeclared_placeholder():
    with pytest.raises(ParameterError) as exc:
        do_save_template({**FILES, "args": ["{{nope}}"]}, operator=True)
    assert "nope" in exc.value.message


def test_it_refuses_a_secret_parameter_in_the_args():
    with pytest.raises(ParameterError) as exc:
        do_save_template({**FILES, "args": ["--token", "{{token}}"]}, operator=True)
    assert "env" in exc.value.message


def test_it_refuses_an_env_reference_off_the_allow_list():
    with pytest.raises(ParameterError):
        do_save_template({**FILES, "env": {"HOME_DIR": "${HOME}"}, "parameters": []}, operator=True)


def test_it_renders_the_parameters_into_the_server(files):
    server = install(files, region="eu-west")
    assert server.args == [*FILES["args"][:3], "/srv/teams/a", "--depth", "3"]
    assert server.env == {"API_TOKEN": "${token}", "REGION": "eu-west", "PROXY": "${HTTPS_PROXY}"}
    assert server.parameters == {"root": "/srv/teams/a", "depth": "3", "region": "eu-west"}
    assert ServerSecret.objects.get(server=server, name="token").value == "tok-1"
    assert server.template == files and server.env_allow == ["HTTPS_PROXY"]


def test_it_drops_an_optional_value_left_out(files):
    assert "REGION" not in install(files).env


def test_it_resolves_allow_listed_variables_and_the_team_secret(files, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    config, redact = resolve_config(install(files))
    assert config.env["API_TOKEN"] == "tok-1" and config.env["PROXY"] == "http://proxy:3128"
    assert "tok-1" in redact


@pytest.mark.parametrize("values, field", [
    ({"root": "/srv/teams/../../etc"}, "parameters.root"),
    ({"root": "/etc"}, "parameters.root"),
    ({"root": "relative/dir"}, "parameters.root"),
    ({"depth": "3; rm -rf /"}, "parameters.depth"),
    ({"region": "EU"}, "parameters.region"),
    ({"region": "${HOME}"}, "parameters.region"),
    ({"token": ""}, "parameters.token"),
    ({"shell": "sh"}, "parameters.shell"),
])
def test_it_refuses_a_value_that_does_not_fit_the_schema(files, values, field):
    with pytest.raises(ParameterError) as exc:
        install(files, **values)
    assert exc.value.field == field
    assert not ToolServer.objects.exists()


def test_it_refuses_a_value_that_reads_as_an_option():
    template = do_save_template({**FILES, "name": "opt", "args": ["{{region}}"],
                                 "parameters": [{"name": "region"}], "env": {}, "env_allow": []}, operator=True)
    with pytest.raises(ParameterError) as exc:
        do_install_template(1, template, "o", {"region": "--exec=id"})
    assert exc.value.field == "parameters.region"


def test_it_keeps_the_stored_secret_when_an_update_leaves_it_empty(files):
    server = do_update_installed(install(files), {"token": "", "depth": "5"})
    assert server.args[-1] == "5"
    assert ServerSecret.objects.get(server=server, name="token").value == "tok-1"


def test_it_refuses_a_name_the_team_already_uses(files):
    install(files)
    with pytest.raises(GatewayError) as exc:
        install(files)
    assert exc.value.field == "name"


def test_it_updates_installed_servers_when_the_template_changes(files):
    server = install(files)
    do_save_template({**FILES, "args": ["-m", "files_server_v2", "--root", "{{root}}"]}, operator=True)
    server.refresh_from_db()
    assert server.args == ["-m", "files_server_v2", "--root", "/srv/teams/a"]


def test_it_disables_an_installed_server_whose_values_no_longer_fit(files):
    server = install(files)
    params = [{**p, "path_prefixes": ["/srv/other"]} if p["name"] == "root" else p for p in FILES["parameters"]]
    do_save_template({**FILES, "parameters": params}, operator=True)
    server.refresh_from_db()
    assert not server.enabled and "root" in server.health_error


def test_it_keeps_a_template_that_servers_use(files):
    install(files)
    with pytest.raises(GatewayError) as exc:
        do_delete_template(files, operator=True)
    assert exc.value.status == 409
    do_delete_template(files, operator=True, force=True)
    assert not ToolServer.objects.exists() and not ServerTemplate.objects.exists()


def test_it_keeps_an_operators_literal_env_value_as_each_servers_secret(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    template = do_save_template({**FILES, "env": {**FILES["env"], "LICENSE_KEY": "lic-Operator-7f3a9"}}, operator=True)
    server = install(template)

    assert server.env["LICENSE_KEY"] == "${LICENSE_KEY}"  # what team members see
    assert ServerSecret.objects.get(server=server, name="LICENSE_KEY").value == "lic-Operator-7f3a9"
    assert "lic-Operator" not in ServerSecret.objects.get(server=server, name="LICENSE_KEY").value_encrypted
    config, sensitive = resolve_config(server)
    assert config.env["LICENSE_KEY"] == "lic-Operator-7f3a9" and "lic-Operator-7f3a9" in sensitive

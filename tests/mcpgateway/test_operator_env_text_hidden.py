"""An operator's text in a template's env value stays the operator's once a team installs it.

# Found by an outside review (2026-12-07, operators and teams); failed before its fix.

`GET /api/v1/gateway/templates` deliberately shows team members only the *names* of a
template's env (`env_names`), and a literal env value becomes each installed server's
encrypted secret. But an env value that mixes the operator's text with a placeholder
(`postgres://svc:<password>@db/{{db}}`) is rendered in clear into the installed server's
`env`, which every team member (a viewer too) reads back from `GET /servers/{id}` and the
config export, and which nothing redacts.
"""

from __future__ import annotations

import sys

import pytest

from mcpgateway.actions.servers import resolve_config
from mcpgateway.actions.templates import do_save_template
from mcpgateway.models import ToolServer
from tests.api.conftest import api, keys  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db

OPERATOR_PASSWORD = "op-db-pass-7d1c9e"

TEMPLATE = {
    "name": "reporting-db", "description": "The reporting database, one schema per team",
    "command": sys.executable, "args": ["-m", "db_server"],
    "env": {"DATABASE_URL": f"postgresql://svc:{OPERATOR_PASSWORD}@db.internal/{{{{schema}}}}"},
    "parameters": [{"name": "schema", "pattern": "[a-z_]{1,30}"}],
}


def test_an_operators_text_in_a_templated_env_value_is_not_shown_to_team_members(api, keys):  # noqa: F811 - the fixtures
    template = do_save_template(TEMPLATE, operator=True)
    status, listed = api.call("get", "/gateway/templates", keys["viewer"])
    assert status == 200
    assert OPERATOR_PASSWORD not in str(listed)  # the catalogue hides env values by design

    status, server = api.call("post", f"/gateway/templates/{template.pk}/install", keys["builder"],
                              {"name": "reports", "parameters": {"schema": "team_a"}})
    assert status == 201, server

    status, shown = api.call("get", f"/gateway/servers/{server['id']}", keys["viewer"])
    assert status == 200
    assert OPERATOR_PASSWORD not in str(shown["env"]), shown["env"]
    export = api.client.get("/api/v1/gateway/servers/export", HTTP_AUTHORIZATION=f"Bearer {keys['viewer']}")
    assert OPERATOR_PASSWORD not in export.content.decode()


def test_an_operators_text_beside_a_reference_in_a_servers_env_is_not_shown_to_team_members(api, keys):  # noqa: F811 - the fixtures
    """The same for a stdio server an operator adds to a team by hand: a value holding a
    `${NAME}` reference is kept as typed, the operator's password beside it included."""
    from mcpgateway.actions.servers import do_save_server

    server = do_save_server(keys["team"].pk, "reports-op", {"SCHEMA": "team_a"}, operator=True, transport="stdio",
                            command=sys.executable, args=["-m", "db_server"],
                            env={"DATABASE_URL": f"postgresql://svc:{OPERATOR_PASSWORD}@db.internal/${{SCHEMA}}"})
    status, shown = api.call("get", f"/gateway/servers/{server.pk}", keys["viewer"])
    assert status == 200
    assert OPERATOR_PASSWORD not in str(shown["env"]), shown["env"]

    # Kept whole as the server's secret, its reference expanded when it starts.
    config, redacted = resolve_config(ToolServer.objects.get(pk=server.pk))
    assert config.env["DATABASE_URL"] == f"postgresql://svc:{OPERATOR_PASSWORD}@db.internal/team_a"
    assert config.env["DATABASE_URL"] in redacted


def test_the_installed_server_still_gets_the_whole_value_secret_parameters_included(api, keys):  # noqa: F811 - the fixtures
    template = do_save_template({**TEMPLATE, "name": "reporting-db-2", "env": {
        "DATABASE_URL": f"postgresql://svc:{OPERATOR_PASSWORD}@db.internal/{{{{schema}}}}?token={{{{token}}}}",
        "PLAIN": "{{schema}}"},
        "parameters": [{"name": "schema", "pattern": "[a-z_]{1,30}"}, {"name": "token", "kind": "secret"}]}, operator=True)
    status, server = api.call("post", f"/gateway/templates/{template.pk}/install", keys["builder"],
                              {"name": "reports2", "parameters": {"schema": "team_b", "token": "tk-5f0c9a2e"}})
    assert status == 201, server
    assert server["env"] == {"DATABASE_URL": "${DATABASE_URL}", "PLAIN": "team_b"}, server["env"]
    config, redacted = resolve_config(ToolServer.objects.get(pk=server["id"]))
    assert config.env == {"DATABASE_URL": f"postgresql://svc:{OPERATOR_PASSWORD}@db.internal/team_b?token=tk-5f0c9a2e",
                          "PLAIN": "team_b"}
    assert "tk-5f0c9a2e" in redacted and config.env["DATABASE_URL"] in redacted
    # A builder's new value renders again into the server's copy.
    status, updated = api.call("put", f"/gateway/servers/{server['id']}/parameters", keys["builder"],
                               {"parameters": {"schema": "team_c"}})
    assert status == 200, updated
    config, _ = resolve_config(ToolServer.objects.get(pk=server["id"]))
    assert config.env["DATABASE_URL"].endswith("/team_c?token=tk-5f0c9a2e")


def test_a_reference_to_the_environment_beside_the_operators_text_still_resolves(keys, monkeypatch):  # noqa: F811 - the fixtures
    from mcpgateway.actions.servers import do_save_server

    monkeypatch.setenv("REPORTS_SCHEMA", "team_env")
    server = do_save_server(keys["team"].pk, "reports-env", operator=True, transport="stdio",
                            command=sys.executable, args=["-m", "db_server"],
                            env={"DATABASE_URL": f"postgresql://svc:{OPERATOR_PASSWORD}@db/${{REPORTS_SCHEMA}}",
                                 "ONLY_REF": "${REPORTS_SCHEMA}"})
    assert server.env == {"DATABASE_URL": "${DATABASE_URL}", "ONLY_REF": "${REPORTS_SCHEMA}"}
    assert server.env_allow == ["REPORTS_SCHEMA"]  # inferred from the value kept whole, too
    config, _ = resolve_config(ToolServer.objects.get(pk=server.pk))
    assert config.env == {"DATABASE_URL": f"postgresql://svc:{OPERATOR_PASSWORD}@db/team_env", "ONLY_REF": "team_env"}

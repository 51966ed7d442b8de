"""An operator's text in a server's env value is not shown to team members.

# Found by an outside review (2026-12-07, operators and teams); failed before its fix.

`GET /api/v1/gateway/templates` shows team members only the *names* of a template's env, and a
literal env value becomes each installed server's encrypted secret. But a value that mixes the
operator's text with a placeholder (`postgres://svc:<password>@db/{{schema}}`) was rendered in
clear into the installed server's `env`, which every member (a viewer too) read back from
`GET /servers/{id}`, the list and the config export; so was an operator's value with text
beside a `${NAME}` reference. Members are now shown `(set by the operator)` there; operators,
and the server's process, get the value.

A first fix stored such values as the server's secrets, expanded at start; a second review
found that it expanded a team's own secret parameter from the process environment, replaced a
secret parameter of the same name, and redacted ordinary values (a data directory) from the
whole team's results. The last three tests keep those out.
"""

from __future__ import annotations

import sys

import pytest

from mcpgateway.actions.servers import do_save_server, resolve_config
from mcpgateway.actions.templates import HIDDEN_ENV, do_save_template
from mcpgateway.models import ToolServer
from mcpgateway.redaction import get_redactor
from tests.api.conftest import api, keys  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db

OPERATOR_PASSWORD = "op-db-pass-7d1c9e"

TEMPLATE = {
    "name": "reporting-db", "description": "The reporting database, one schema per team",
    "command": sys.executable, "args": ["-m", "db_server"],
    "env": {"DATABASE_URL": f"postgresql://svc:{OPERATOR_PASSWORD}@db.internal/{{{{schema}}}}", "SCHEMA": "{{schema}}"},
    "parameters": [{"name": "schema", "pattern": "[a-z_]{1,30}"}],
}


def test_an_operators_text_in_a_templated_env_value_is_not_shown_to_team_members(api, keys):  # noqa: F811
    template = do_save_template(TEMPLATE, operator=True)
    status, listed = api.call("get", "/gateway/templates", keys["viewer"])
    assert status == 200
    assert OPERATOR_PASSWORD not in str(listed)  # the catalogue hides env values by design

    status, server = api.call("post", f"/gateway/templates/{template.pk}/install", keys["builder"],
                              {"name": "reports", "parameters": {"schema": "team_a"}})
    assert status == 201, server
    assert server["env"] == {"DATABASE_URL": HIDDEN_ENV, "SCHEMA": "team_a"}  # the team's own value shows

    for role in ("viewer", "builder", "owner"):
        status, shown = api.call("get", f"/gateway/servers/{server['id']}", keys[role])
        assert status == 200
        assert OPERATOR_PASSWORD not in str(shown["env"]), (role, shown["env"])
        status, every = api.call("get", "/gateway/servers", keys[role])
        assert OPERATOR_PASSWORD not in str(every), role
        export = api.client.get("/api/v1/gateway/servers/export", HTTP_AUTHORIZATION=f"Bearer {keys[role]}")
        assert export.status_code == 200 and OPERATOR_PASSWORD not in export.content.decode(), role
    status, updated = api.call("put", f"/gateway/servers/{server['id']}/parameters", keys["builder"],
                               {"parameters": {"schema": "team_b"}})
    assert status == 200 and OPERATOR_PASSWORD not in str(updated), updated

    # The server's process still gets the whole value.
    config, _ = resolve_config(ToolServer.objects.get(pk=server["id"]))
    assert config.env["DATABASE_URL"] == f"postgresql://svc:{OPERATOR_PASSWORD}@db.internal/team_b"


def test_an_operators_text_beside_a_reference_in_a_servers_env_is_not_shown_to_team_members(api, keys, client):  # noqa: F811
    """The same for a stdio server an operator adds to a team by hand: a value holding a
    `${NAME}` reference is kept as typed, the operator's password beside it included."""
    server = do_save_server(keys["team"].pk, "reports-op", {"SCHEMA": "team_a"}, operator=True, transport="stdio",
                            command=sys.executable, args=["-m", "db_server"],
                            env={"DATABASE_URL": f"postgresql://svc:{OPERATOR_PASSWORD}@db.internal/${{SCHEMA}}",
                                 "ONLY_REF": "${SCHEMA}"})
    status, shown = api.call("get", f"/gateway/servers/{server.pk}", keys["viewer"])
    assert status == 200
    assert shown["env"] == {"DATABASE_URL": HIDDEN_ENV, "ONLY_REF": "${SCHEMA}"}, shown["env"]
    # An operator sees (and can export and re-import) the value as typed.
    from django.contrib.auth import get_user_model

    staff = get_user_model().objects.create_user("op", is_staff=True, is_superuser=True)
    from orchestrator.actions import do_add_member

    do_add_member(keys["team"], staff, "owner")
    client.force_login(staff)
    exported = client.get("/tools/config/export/?style=yaml").content.decode()
    assert OPERATOR_PASSWORD in exported, exported[:500]
    config, _ = resolve_config(ToolServer.objects.get(pk=server.pk))
    assert config.env["DATABASE_URL"] == f"postgresql://svc:{OPERATOR_PASSWORD}@db.internal/team_a"


def test_a_team_secret_parameter_is_never_expanded_from_the_environment_or_the_operators_literals(api, keys, monkeypatch):  # noqa: F811
    monkeypatch.setenv("REVIEW_OPERATOR_TOKEN", "host-only-token-4b1e")
    template = do_save_template({
        "name": "review-expansion", "command": sys.executable, "args": ["-m", "srv"],
        "env": {"UPSTREAM": "${REVIEW_OPERATOR_TOKEN}", "DB_PASSWORD": "operator-db-pass-91aa",
                "TEAM_TOKEN": "{{team_token}}", "OTHER": "{{other}}"},
        "env_allow": ["REVIEW_OPERATOR_TOKEN"],
        "parameters": [{"name": "team_token", "kind": "secret"}, {"name": "other", "kind": "secret"}]}, operator=True)
    status, server = api.call("post", f"/gateway/templates/{template.pk}/install", keys["builder"],
                              {"name": "exp1", "parameters": {"team_token": "${REVIEW_OPERATOR_TOKEN}",
                                                              "other": "${DB_PASSWORD}"}})
    assert status == 201, server
    config, _ = resolve_config(ToolServer.objects.get(pk=server["id"]))
    assert config.env["TEAM_TOKEN"] == "${REVIEW_OPERATOR_TOKEN}" and config.env["OTHER"] == "${DB_PASSWORD}"


def test_a_templated_value_named_like_its_secret_parameter_keeps_the_teams_secret(api, keys):  # noqa: F811
    template = do_save_template({
        "name": "review-collide", "command": sys.executable, "args": ["-m", "srv"],
        "env": {"API_KEY": "Bearer {{API_KEY}}"}, "parameters": [{"name": "API_KEY", "kind": "secret"}]}, operator=True)
    status, server = api.call("post", f"/gateway/templates/{template.pk}/install", keys["builder"],
                              {"name": "collide", "parameters": {"API_KEY": "team-key-77c2"}})
    assert status == 201, server
    config, _ = resolve_config(ToolServer.objects.get(pk=server["id"]))
    assert config.env["API_KEY"] == "Bearer team-key-77c2"


def test_a_templated_data_directory_is_not_redacted_from_the_teams_results(api, keys):  # noqa: F811
    template = do_save_template({
        "name": "review-files", "command": sys.executable, "args": ["-m", "srv"],
        "env": {"DATA_DIR": "/srv/teams/{{team_id}}", "LANG": "{{lang}}.UTF-8"},
        "parameters": [{"name": "lang", "pattern": "[a-z]{2}_[A-Z]{2}", "default": "en_US"}]}, operator=True)
    status, server = api.call("post", f"/gateway/templates/{template.pk}/install", keys["builder"],
                              {"name": "files", "parameters": {}})
    assert status == 201, server
    team_id = keys["team"].pk
    result = f"wrote /srv/teams/{team_id}/report.csv (locale en_US.UTF-8)"
    assert get_redactor(team_id).text(result) == result

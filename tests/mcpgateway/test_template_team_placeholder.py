"""`{{team_id}}` binds an installed server to its team: the gateway fills it with the installing
team's id, and no team can give it. A path parameter could only be held under a prefix, so
with a "one directory per team" template team A installed `/srv/teams/<team B>` and read team
B's files (found by an outside review, 2026-12-07, operators and teams)."""

from __future__ import annotations

import sys

import pytest

from mcpgateway.actions.servers import resolve_config
from mcpgateway.actions.templates import do_install_template, do_save_template, do_update_installed
from mcpgateway.errors import ParameterError
from mcpgateway.models import ToolServer
from orchestrator.actions import do_create_team

pytestmark = pytest.mark.django_db

PER_TEAM = {"name": "team-files", "command": sys.executable,
            "args": ["-m", "files_server", "--root=/srv/teams/{{team_id}}/{{sub}}"], "cwd": "/srv/teams/{{team_id}}",
            "parameters": [{"name": "sub", "pattern": "[a-z]{1,20}", "default": "docs"}]}


@pytest.fixture
def teams(django_user_model):
    owner = django_user_model.objects.create_user("owner")
    return do_create_team("A", owner), do_create_team("B", owner)


def test_each_team_gets_its_own_directory_and_cannot_name_another(teams):
    a, b = teams
    template = do_save_template(PER_TEAM, operator=True)
    mine = do_install_template(a.pk, template, "files", {"sub": "notes"})
    theirs = do_install_template(b.pk, template, "files", {})
    assert mine.args == ["-m", "files_server", f"--root=/srv/teams/{a.pk}/notes"] and mine.cwd == f"/srv/teams/{a.pk}"
    assert theirs.args[-1] == f"--root=/srv/teams/{b.pk}/docs"
    assert mine.parameters == {"sub": "notes"}  # the team's id is not one of its values
    with pytest.raises(ParameterError, match="not a parameter"):
        do_install_template(a.pk, template, "files2", {"team_id": str(b.pk)})
    with pytest.raises(ParameterError, match="not a parameter"):
        do_update_installed(mine, {"team_id": str(b.pk)})
    config, _ = resolve_config(ToolServer.objects.get(pk=mine.pk))
    assert config.args[-1] == f"--root=/srv/teams/{a.pk}/notes"


def test_a_template_cannot_declare_a_parameter_named_team():
    with pytest.raises(ParameterError, match="installing team"):
        do_save_template({**PER_TEAM, "parameters": [{"name": "team_id"}]}, operator=True)


def test_a_template_change_renders_each_server_with_its_own_team(teams):
    a, b = teams
    template = do_save_template(PER_TEAM, operator=True)
    do_install_template(a.pk, template, "files", {})
    do_install_template(b.pk, template, "files", {})
    do_save_template({**PER_TEAM, "args": ["-m", "files_server", "--root=/data/{{team_id}}"]}, operator=True)
    roots = dict(ToolServer.objects.values_list("team_id", "args"))
    assert roots == {a.pk: ["-m", "files_server", f"--root=/data/{a.pk}"], b.pk: ["-m", "files_server", f"--root=/data/{b.pk}"]}

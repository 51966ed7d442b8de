# Found by an outside review (2026-12-07, the operator/team boundary); failed before its fix.
"""A team's values for a catalogue template stay where the operator put them.

A `path` value was checked by its realpath and passed on as its normpath: with an ordinary
symlink under the prefix (`current -> releases/v2`), `<prefix>/acme/current/../../..` resolved
inside the prefix for the check and collapsed lexically to the prefix's parent for the process
(a builder installed server-filesystem on it and read a file outside). A `string` value
placed inside a template's path climbed out of it the same way. An optional value left out
emptied the whole working directory (the server started in the gateway's own directory) or
left `--root=` on the command line; values put together made a `..` segment none of them held;
and a template every install would fail on (an optional working directory, a default outside its
prefix) was accepted when saved."""

from __future__ import annotations

import pytest

from mcpgateway.actions.templates import do_install_template, do_save_template
from mcpgateway.errors import ParameterError
from mcpgateway.models import ToolServer

pytestmark = pytest.mark.django_db


def _template(**fields):
    return do_save_template({"name": "files", "command": "npx", **fields}, operator=True)


def test_a_path_value_with_dotdot_is_refused_even_where_a_symlink_keeps_it_inside(team, tmp_path):
    prefix = tmp_path / "srv" / "teams"
    deep = prefix / "acme" / "releases" / "v2"
    deep.mkdir(parents=True)
    (prefix / "acme" / "current").symlink_to(deep)
    template = _template(args=["-y", "@modelcontextprotocol/server-filesystem", "{{root}}"],
                         parameters=[{"name": "root", "kind": "path", "path_prefixes": [str(prefix)]}])
    for value in (f"{prefix}/acme/current/../../..", f"{prefix}/../..", f"{prefix}/acme/current/.."):
        with pytest.raises(ParameterError, match=r"`\.\.` path segment"):
            do_install_template(team.pk, template, "files", {"root": value})
    assert not ToolServer.objects.filter(team_id=team.pk).exists()
    server = do_install_template(team.pk, template, "files", {"root": f"{prefix}/acme/current"})
    assert server.args[-1] == f"{prefix}/acme/current"


def test_a_string_value_cannot_climb_out_of_the_templates_path_unless_a_pattern_allows_it(team):
    template = _template(args=["/srv/teams/{{team}}"], parameters=[{"name": "team"}])
    for value in ("../../etc", "acme/../../etc", "..", "a\\..\\b"):
        with pytest.raises(ParameterError, match=r"`\.\.` path segment"):
            do_install_template(team.pk, template, "files", {"team": value})
    server = do_install_template(team.pk, template, "files", {"team": "v1..v2"})  # not a segment
    assert server.args == ["/srv/teams/v1..v2"]
    patterned = do_save_template({"name": "refs", "command": "git", "args": ["{{range}}"],
                                  "parameters": [{"name": "range", "pattern": r"[a-z0-9./]+"}]}, operator=True)
    assert do_install_template(team.pk, patterned, "refs", {"range": "../x"}).args == ["../x"]


def test_an_optional_value_left_out_drops_an_argument_it_alone_fills(team):
    template = _template(args=["--root={{root}}", "--allowed={{main}},{{extra}}", "--verbose"], cwd="/srv/{{home}}",
                         parameters=[{"name": "root", "required": False}, {"name": "home"},
                                     {"name": "main", "required": False}, {"name": "extra", "required": False}])
    server = do_install_template(team.pk, template, "files", {"home": "work", "main": "docs"})
    # `--root=` is gone; `--allowed=docs,` keeps the value it has (dropping it would lift a restriction).
    assert server.args == ["--allowed=docs,", "--verbose"] and server.cwd == "/srv/work"


def test_values_put_together_cannot_make_a_dotdot_segment(team):
    template = _template(args=["--root=/srv/data/{{a}}{{b}}/x"], parameters=[{"name": "a"}, {"name": "b"}])
    with pytest.raises(ParameterError, match=r"make a `\.\.` path segment"):
        do_install_template(team.pk, template, "files", {"a": ".", "b": "."})
    assert do_install_template(team.pk, template, "files", {"a": "v", "b": "2"}).args == ["--root=/srv/data/v2/x"]


def test_a_template_every_install_would_fail_is_refused_when_saved():
    with pytest.raises(ParameterError, match="working directory"):
        _template(cwd="{{home}}", parameters=[{"name": "home", "required": False}])
    with pytest.raises(ParameterError, match="default of root"):
        _template(args=["{{root}}"], parameters=[{"name": "root", "kind": "path", "path_prefixes": ["/srv"],
                                                  "default": "/srv/../etc"}])
    _template(cwd="{{home}}", parameters=[{"name": "home", "required": False, "default": "/srv/work"}])


def test_an_optional_value_that_would_leave_its_option_without_a_value_is_refused_when_saved(team):
    # Left out, `{{root}}` was dropped and `--root` stayed: `--root /srv/public` ran with the
    # next argument as the root. Written as one argument, or with a default, it is fine.
    with pytest.raises(ParameterError, match=r"follows the option '--root'.*--root=\{\{root\}\}"):
        _template(args=["--root", "{{root}}", "/srv/public"], parameters=[{"name": "root", "required": False}])
    assert not _template(args=["--root={{root}}", "/srv/public"],
                         parameters=[{"name": "root", "required": False}]).instances.exists()
    template = _template(args=["--root", "{{root}}", "/srv/public"],
                         parameters=[{"name": "root", "required": False, "default": "/srv/mine"}])
    assert do_install_template(team.pk, template, "files", {}).args == ["--root", "/srv/mine", "/srv/public"]
    template = _template(args=["--verbose=yes", "{{root}}"], parameters=[{"name": "root", "required": False}])
    assert do_install_template(team.pk, template, "other", {}).args == ["--verbose=yes"]


def test_a_server_installed_with_values_a_later_check_refuses_is_not_started(team, tmp_path):
    # Values stored before a check existed (a `..` segment, installed before the fix above) were
    # only checked again when the operator saved the template; until then the server ran on them.
    from mcpgateway.runtime import _load_configs

    prefix = tmp_path / "srv"
    (prefix / "a").mkdir(parents=True)
    template = _template(args=["{{root}}"], parameters=[{"name": "root", "kind": "path", "path_prefixes": [str(prefix)]}])
    good = do_install_template(team.pk, template, "good", {"root": str(prefix / "a")})
    old = do_install_template(team.pk, template, "old", {"root": str(prefix / "a")})
    ToolServer.objects.filter(pk=old.pk).update(parameters={"root": f"{prefix}/a/../.."}, args=[f"{prefix}/a/../.."])

    configs, _, broken = _load_configs()
    assert list(broken) == [old.pk] and "`..` path segment" in broken[old.pk]
    assert [list(c.args) for c in configs.values()] == [[str(prefix / "a")]]
    old.refresh_from_db()
    assert old.health == "down" and "enter them again" in old.health_error
    good.refresh_from_db()
    assert good.health_error == ""

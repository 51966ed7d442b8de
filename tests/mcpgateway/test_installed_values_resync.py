# Found by an outside review (2026-12-07, a reading of that day's fixes); failed before its fix.
"""`_load_configs` (every process's gateway, every RESYNC_S) now re-checks every installed
server's values against its template. The check only catches ParameterError: a template row
whose stored parameters no longer validate (saved before a check existed — the very case the
re-check is for — or written by a newer release during a rolling upgrade: `extra="forbid"`)
raises a pydantic ValidationError out of `_load_configs`, and the whole resync fails: no
server of any team is started, restarted or stopped in that process any more."""

from __future__ import annotations

import pytest

from mcpgateway.actions.templates import do_install_template, do_save_template
from mcpgateway.models import ServerTemplate

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("stored", [
    [{"name": "root", "kind": "path"}],  # saved before `path_prefixes` was required
    [{"name": "root", "kind": "string", "placeholder": "e.g. docs"}],  # a newer release's field
], ids=["older-row", "newer-row"])
def test_one_template_row_that_no_longer_validates_does_not_stop_every_other_server(team, stored):
    from mcpgateway.runtime import _load_configs

    fine = do_save_template({"name": "fine", "command": "npx", "args": ["{{root}}"],
                             "parameters": [{"name": "root"}]}, operator=True)
    good = do_install_template(team.pk, fine, "good", {"root": "docs"})
    aged = do_save_template({"name": "aged", "command": "npx", "args": ["{{root}}"],
                             "parameters": [{"name": "root"}]}, operator=True)
    old = do_install_template(team.pk, aged, "old", {"root": "docs"})
    ServerTemplate.objects.filter(pk=aged.pk).update(parameters=stored)

    try:
        configs, _, broken = _load_configs()
    except Exception as exc:
        pytest.fail(f"_load_configs raised {type(exc).__name__} for one server's template: no server of any team "
                    f"(server {good.pk} 'good' included) is synced in this process: {str(exc).splitlines()[0]}")
    assert f"s{good.pk}" in configs
    assert old.pk in broken


def test_a_broken_installed_server_is_not_written_again_at_every_resync(team, tmp_path):
    """A server the re-check refuses is set down with its problem at every resync (10 s) in every
    process that runs the gateway, although nothing changed: an UPDATE per broken server per
    process every 10 s, forever."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from mcpgateway.models import ToolServer
    from mcpgateway.runtime import _load_configs

    prefix = tmp_path / "srv"
    (prefix / "a").mkdir(parents=True)
    template = do_save_template({"name": "files", "command": "npx", "args": ["{{root}}"],
                                 "parameters": [{"name": "root", "kind": "path", "path_prefixes": [str(prefix)]}]},
                                operator=True)
    old = do_install_template(team.pk, template, "old", {"root": str(prefix / "a")})
    ToolServer.objects.filter(pk=old.pk).update(parameters={"root": f"{prefix}/a/../.."}, args=[f"{prefix}/a/../.."])
    _load_configs()  # the first resync records the problem
    with CaptureQueriesContext(connection) as queries:
        _load_configs()  # the next one, nothing changed
    writes = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("UPDATE")]
    assert not writes, f"{len(writes)} UPDATE(s) at a resync where nothing changed: {writes[0][:160]}"

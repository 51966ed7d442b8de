# Found by an outside review (2026-12-07, tool-server config export); failed before its fix.
"""An export holds every setting its import reads, in both styles, and an import leaves alone
what its file does not say: export -> import -> export gives the same file and the same servers."""

from __future__ import annotations

import json

import pytest

from mcpgateway.actions.config_files import do_import_config, export_config
from mcpgateway.actions.servers import do_save_server
from mcpgateway.models import ToolServer

pytestmark = pytest.mark.django_db


def _server(team_id: int) -> ToolServer:
    return do_save_server(team_id, "tools", operator=True, transport="stdio", command="python3",
                          args=["-m", "my_tools"], description="Our in-house tools", call_timeout_s=300.0,
                          caller_context=True)


@pytest.mark.parametrize("style", ["yaml", "claude"])
def test_it_keeps_every_setting_through_export_and_import_into_another_team(style):
    _server(1)
    exported = export_config(1, style)

    do_import_config(2, exported, operator=True)

    restored = ToolServer.objects.get(team_id=2, name="tools")
    assert (restored.call_timeout_s, restored.description, restored.caller_context) == (
        300.0, "Our in-house tools", True), f"settings lost by export/import; export was:\n{exported}"
    assert export_config(2, style) == exported


def test_it_writes_the_settings_in_the_claude_style_too():
    _server(1)

    entry = json.loads(export_config(1, "claude"))["mcpServers"]["tools"]

    assert (entry["timeout"], entry["description"], entry["caller_context"]) == (300.0, "Our in-house tools", True)


def test_it_changes_nothing_when_a_teams_claude_export_is_imported_back():
    _server(1)
    before = export_config(1, "yaml")

    do_import_config(1, export_config(1, "claude"), operator=True)

    server = ToolServer.objects.get(team_id=1, name="tools")
    assert (server.description, server.caller_context, server.call_timeout_s) == ("Our in-house tools", True, 300.0)
    assert export_config(1, "yaml") == before


def test_it_keeps_a_stored_description_and_caller_context_the_file_leaves_out():
    _server(1)

    do_import_config(1, '{"mcpServers": {"tools": {"command": "python3", "args": ["-m", "my_tools"]}}}', operator=True)

    server = ToolServer.objects.get(team_id=1, name="tools")
    assert (server.description, server.caller_context) == ("Our in-house tools", True)


def test_it_sets_description_and_caller_context_the_file_gives():
    _server(1)

    do_import_config(1, "servers:\n  tools: {command: python3, description: '', caller_context: false}\n", operator=True)

    server = ToolServer.objects.get(team_id=1, name="tools")
    assert (server.description, server.caller_context) == ("", False)


def test_it_leaves_the_default_call_timeout_out_of_an_export():
    do_save_server(1, "plain", operator=True, transport="stdio", command="python3")

    assert "timeout" not in export_config(1, "yaml")
    assert "timeout" not in export_config(1, "claude")

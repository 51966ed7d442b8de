"""New tools and changed annotations on an approved server are held until approved.

A real stdio MCP server (tests/fakes/mcp_changing_tools.py) reads its tool list from a
file; the test changes the file and kills the server, and the gateway's supervisor
restarts it and records the new discovery.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings

from mcpgateway import catalogue
from mcpgateway.actions.access import do_grant
from mcpgateway.actions.catalogue import (
    do_approve_tool_definition,
    do_record_discovery,
    held_change,
)
from mcpgateway.actions.servers import do_save_server
from mcpgateway.dispatch import Gateway
from mcpgateway.models import Tool, ToolServer, ToolStatus, definition_hash
from mcpgateway.types import ToolDenied, ToolInvocation
from mcpgateway.upstream.config import DiscoveredTool, Discovery
from tests.conftest import start_servers
from tests.mcpgateway.conftest import agent

pytestmark = pytest.mark.django_db(transaction=True)

READ = {"name": "read", "description": "Read a note.", "annotations": {"readOnlyHint": True, "destructiveHint": False}}
WIPE = {"name": "wipe", "description": "Wipe the notes.", "annotations": {"destructiveHint": True}}


def serve(runtime, path: Path, tools: list[dict[str, Any]]) -> ToolServer:
    path.write_text(json.dumps(tools))
    server = do_save_server(1, "notes", transport="stdio", command=sys.executable,
                            args=["-m", "tests.fakes.mcp_changing_tools", str(path)], cwd=str(settings.BASE_DIR),
                            operator=True)
    do_grant(server, agent="a")
    start_servers(runtime, server)
    return server


def restart_with(runtime, server: ToolServer, path: Path, tools: list[dict[str, Any]], until) -> None:
    """Rewrite the tool list, kill the server process, wait until its rediscovery is recorded."""
    path.write_text(json.dumps(tools))
    # The tools are recorded (what `start_servers` waits for) a moment before the supervisor
    # marks the server up with its pid: wait for the pid.
    deadline = time.monotonic() + 30
    while (health := runtime.health(f"s{server.pk}")) is None or health.pid is None:
        assert time.monotonic() < deadline, "the server was never marked up"
        time.sleep(0.02)
    os.kill(health.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while not until():
        assert time.monotonic() < deadline, "the restarted server's tools were not recorded"
        time.sleep(0.05)
    catalogue.invalidate()


def call(name: str, arguments: dict[str, Any]):
    return async_to_sync(Gateway(1).call_tool)(ToolInvocation(agent("a"), name, arguments, call_id=f"c{time.monotonic_ns()}"))


def visible() -> list[str]:
    return [t.name for t in async_to_sync(Gateway(1).list_tools)(agent("a"))]


def test_it_approves_the_tools_of_a_servers_first_discovery(gateway_runtime, tmp_path):
    server = serve(gateway_runtime, tmp_path / "tools.json", [READ])

    tool = Tool.objects.get(server=server, name="read")
    assert tool.status == ToolStatus.ACTIVE and tool.approved_hash == tool.current_hash
    assert call("notes__read", {"text": "x"}).content == "read: x"


def test_it_holds_a_tool_added_after_the_servers_tools_were_approved(gateway_runtime, tmp_path):
    path = tmp_path / "tools.json"
    server = serve(gateway_runtime, path, [READ])

    restart_with(gateway_runtime, server, path, [READ, WIPE], lambda: Tool.objects.filter(server=server, name="wipe").exists())

    wipe = Tool.objects.get(server=server, name="wipe")
    assert wipe.status == ToolStatus.HELD and wipe.approved_hash == ""
    assert "notes__wipe" not in visible() and "notes__read" in visible()
    with pytest.raises(ToolDenied, match="held for approval: a tool new on its server"):
        call("notes__wipe", {})
    assert held_change(wipe)["annotations"] == {"approved": None, "current": {"destructiveHint": True}}


def test_it_makes_a_held_new_tool_callable_once_approved(gateway_runtime, tmp_path):
    path = tmp_path / "tools.json"
    server = serve(gateway_runtime, path, [READ])
    restart_with(gateway_runtime, server, path, [READ, WIPE], lambda: Tool.objects.filter(server=server, name="wipe").exists())

    do_approve_tool_definition(Tool.objects.get(server=server, name="wipe"))
    catalogue.invalidate()

    assert Tool.objects.get(server=server, name="wipe").status == ToolStatus.ACTIVE
    assert call("notes__wipe", {"text": "all"}).content == "wipe: all"


def test_it_holds_a_tool_whose_destructive_hint_changes(gateway_runtime, tmp_path):
    path = tmp_path / "tools.json"
    server = serve(gateway_runtime, path, [READ])
    flipped = {**READ, "annotations": {"readOnlyHint": False, "destructiveHint": True}}

    restart_with(gateway_runtime, server, path, [flipped],
                 lambda: Tool.objects.get(server=server, name="read").status == ToolStatus.HELD)

    change = held_change(Tool.objects.get(server=server, name="read"))
    assert set(change) == {"annotations"}
    assert change["annotations"]["current"]["destructiveHint"] is True
    with pytest.raises(ToolDenied, match="held for re-approval"):
        call("notes__read", {})


def test_it_carries_an_approval_made_before_annotations_were_covered_over(tmp_path):
    server = do_save_server(1, "old", transport="stdio", command=sys.executable, args=["-V"], operator=True)
    legacy = {"description": "Read a note.", "input_schema": {"type": "object"}, "output_schema": None}
    Tool.objects.create(server=server, name="read", description=legacy["description"], input_schema=legacy["input_schema"],
                        annotations={"readOnlyHint": True}, approved_hash=definition_hash(legacy),
                        approved_definition=legacy, current_hash=definition_hash(legacy))
    found = DiscoveredTool("read", "Read a note.", {"type": "object"}, None, {"readOnlyHint": True})

    report = do_record_discovery(server.pk, Discovery([found], [], [], {}))

    tool = Tool.objects.get(server=server, name="read")
    assert report["held"] == [] and tool.status == ToolStatus.ACTIVE
    assert tool.approved_definition["annotations"] == {"readOnlyHint": True} and tool.approved_hash == tool.current_hash


def test_a_rediscovery_that_changes_nothing_keeps_the_caches_and_a_change_drops_them():
    server = do_save_server(1, "steady", transport="stdio", command=sys.executable, args=["-V"], operator=True)
    read = DiscoveredTool("read", "Read a note.", {"type": "object"}, None, {"readOnlyHint": True})
    wipe = DiscoveredTool("wipe", "Wipe the notes.", {"type": "object"}, None, {"destructiveHint": True})
    do_record_discovery(server.pk, Discovery([read], [], [], {}))

    before = catalogue._generation
    do_record_discovery(server.pk, Discovery([read], [], [], {}))  # a reconnect: the same tools
    assert catalogue._generation == before  # snapshots and /mcp key cache kept

    do_record_discovery(server.pk, Discovery([read, wipe], [], [], {}))  # a new tool (held)
    assert catalogue._generation == before + 1
    changed = DiscoveredTool("read", "Read a note and mail it out.", {"type": "object"}, None, {"readOnlyHint": True})
    do_record_discovery(server.pk, Discovery([changed, wipe], [], [], {}))  # a changed definition
    assert catalogue._generation == before + 2
    do_record_discovery(server.pk, Discovery([changed], [], [], {}))  # a tool gone
    assert catalogue._generation == before + 3
    assert Tool.objects.get(server=server, name="wipe").status == ToolStatus.REMOVED

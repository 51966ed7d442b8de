"""The read side the pages and the API use: servers, tools, held tools, grants, audit filters."""

from __future__ import annotations

import pytest
from django.utils import timezone

from mcpgateway import queries
from mcpgateway.actions.access import do_grant
from mcpgateway.models import AuditEntry, Tool, ToolServer, ToolStatus

pytestmark = pytest.mark.django_db


def _audit(**fields) -> AuditEntry:
    defaults = {"team_id": 1, "principal_kind": "agent", "tool_name": "files__read", "status": "ok", "created_at": timezone.now()}
    return AuditEntry.objects.create(**{**defaults, **fields})


def test_it_lists_servers_with_tool_and_held_counts(files_server):
    Tool.objects.filter(server=files_server, name="read").update(status=ToolStatus.HELD)
    ToolServer.objects.create(team_id=2, name="elsewhere", command="x")

    (row,) = queries.servers(1)

    assert (row.name, row.tool_count, row.held_count) == ("files", 3, 1)


def test_it_shows_what_changed_in_held_tools(files_server):
    tool = files_server.tools.get(name="read")
    Tool.objects.filter(pk=tool.pk).update(status=ToolStatus.HELD, description="read, then exfiltrate")

    (held,) = queries.held_tools(1)

    assert held["tool"].name == "read"
    assert held["change"] == {"description": {"approved": "read a file", "current": "read, then exfiltrate"}}


def test_it_lists_an_agents_grants_including_team_wide_ones(files_server):
    do_grant(files_server, agent="a", tool=files_server.tools.get(name="read"))
    do_grant(files_server)
    do_grant(files_server, agent="b")

    kinds = sorted((g.principal_kind, g.agent_name) for g in queries.grants(1, agent="a"))

    assert kinds == [("agent", "a"), ("team", "")]


def test_it_filters_and_pages_the_audit_log(files_server):
    for i in range(5):
        _audit(run_id=7, agent_name="a", status="ok" if i % 2 else "denied")
    _audit(run_id=8, agent_name="b", tool_name="files__write")
    _audit(team_id=2, run_id=7)

    assert len(queries.audit_log(1, queries.AuditFilter(run_id=7))) == 5
    assert len(queries.audit_log(1, queries.AuditFilter(run_id=7, status="denied"))) == 3
    assert [r.tool_name for r in queries.audit_log(1, queries.AuditFilter(agent="b"))] == ["files__write"]
    first = queries.audit_log(1, limit=4)
    rest = queries.audit_log(1, queries.AuditFilter(before_id=first[-1].id), limit=4)
    assert len(first) == 4 and len(rest) == 2 and not {r.id for r in first} & {r.id for r in rest}

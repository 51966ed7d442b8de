"""The tool-call audit log on the tools pages: filters and keyset pagination, team-scoped."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.utils import timezone

from mcpgateway.models import AuditEntry

pytestmark = pytest.mark.django_db


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def audit(team_id: int, **fields) -> AuditEntry:
    defaults = {"team_id": team_id, "principal_kind": "agent", "agent_name": "coder", "tool_name": "files__read",
                "status": "ok", "created_at": timezone.now()}
    return AuditEntry.objects.create(**{**defaults, **fields})


def row_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'id="audit-(\d+)"', html)]


@pytest.fixture
def log(team):
    rows = {
        "a": audit(team.pk, run_id=7, status="ok"),
        "b": audit(team.pk, run_id=7, status="denied", error="no grant"),
        "c": audit(team.pk, run_id=8, agent_name="security", tool_name="code__scan",
                   arguments={"code": "<script>alert(1)</script>"}),
        "other_team": audit(team.pk + 100, run_id=7),
    }
    return rows


def test_it_lists_the_teams_calls_newest_first(log, teammate):
    ids = row_ids(login(teammate).get("/tools/audit/").content.decode())

    assert ids == [log["c"].pk, log["b"].pk, log["a"].pk]


@pytest.mark.parametrize(("query", "expected"), [
    ("run=7", ["b", "a"]),
    ("agent=security", ["c"]),
    ("tool=code__scan", ["c"]),
    ("status=denied", ["b"]),
    ("run=7&status=ok", ["a"]),
])
def test_it_filters_by_run_agent_tool_and_status(log, teammate, query, expected):
    ids = row_ids(login(teammate).get(f"/tools/audit/?{query}").content.decode())

    assert ids == [log[k].pk for k in expected]


def test_it_pages_with_a_keyset_keeping_the_filters(team, teammate):
    rows = [audit(team.pk, run_id=9) for _ in range(55)]
    audit(team.pk, run_id=10)
    client = login(teammate)

    first = client.get("/tools/audit/?run=9").content.decode()
    assert len(row_ids(first)) == 50
    older = re.search(r'href="(\?[^"]*before=\d+[^"]*)"', first).group(1).replace("&amp;", "&")
    assert "run=9" in older
    second = client.get(f"/tools/audit/{older}").content.decode()

    assert row_ids(second) == [r.pk for r in reversed(rows[:5])]
    assert not set(row_ids(first)) & set(row_ids(second))


def test_it_shows_arguments_escaped(log, teammate):
    page = login(teammate).get("/tools/audit/").content.decode()

    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page

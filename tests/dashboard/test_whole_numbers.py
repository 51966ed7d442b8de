"""Numbers typed into forms, query strings and headers: a character that `str.isdigit()`
accepts but `int()` refuses (a superscript two, "²"), or far too many digits, must be a
400/404 or be ignored, never a 500 (`mcpgateway/whole_numbers.py`). Found by a review."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

SUP2 = "\u00b2"  # "²": "²".isdigit() is True, int("²") raises ValueError
HUGE = "9" * 5000  # past int()'s digit limit


@pytest.fixture
def client(owner, team):
    c = Client(raise_request_exception=False)
    c.force_login(owner)
    return c


@pytest.mark.parametrize("method,path,data", [
    ("get", "/tools/audit/", {"before": SUP2}),
    ("post", "/tools/access/grants/", {"target": f"server:{SUP2}", "principal": "team"}),
    ("get", "/runs/new/", {"pipeline": SUP2}),
    ("post", "/usage/limits/", {"scope": "agent", "kind": "concurrent_runs", "value": "1", "target": f"agent:{SUP2}"}),
    ("get", "/tools/audit/", {"before": HUGE}),
    ("get", "/runs/new/", {"pipeline": HUGE}),
    ("post", "/tools/access/grants/", {"target": "server:1", "principal": "team", "calls_per_minute": HUGE}),
])
def test_a_superscript_digit_is_not_a_server_error(client, method, path, data):
    response = getattr(client, method)(path, data)
    assert response.status_code < 500


def test_a_superscript_last_event_id_is_not_a_server_error(owner, team):
    from mcpgateway.actions.access import do_create_api_key
    from tests.conftest import pipeline, scripted, start

    scripted(team, "w", {"text": "done"})
    run = start(pipeline(team, {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "hi"}]}))
    token = do_create_api_key(team.pk, "k", owner, scopes=["read"])[1]
    c = Client(raise_request_exception=False)
    response = c.get(f"/api/v1/runs/{run.pk}/events/stream", HTTP_AUTHORIZATION=f"Bearer {token}",
                     HTTP_LAST_EVENT_ID=SUP2)
    assert response.status_code < 500


@pytest.mark.parametrize("key", ["\u00b2", "\u2460", "9" * 5000])
def test_a_template_index_that_is_not_ascii_digits_reads_nothing(key):
    from orchestrator.engine.scope import Scope

    scope = Scope({"items": ["a", "b", "c"]})
    assert scope.resolve(f"input.items.{key}") is None
    assert scope.resolve("input.items.1") == "b"


@pytest.mark.parametrize("text, number", [("12", 12), ("0", 0), ("\u00b2", None), ("\u0663", None), ("", None),
                                          (None, None), (" 1", None), ("1" * 18, int("1" * 18)), ("1" * 19, None)])
def test_whole_numbers_are_ascii_digits_only(text, number):
    from mcpgateway.whole_numbers import whole

    assert whole(text) == number


@pytest.mark.parametrize("team", ["abc", SUP2, HUGE])
def test_the_team_switcher_ignores_a_team_that_is_not_a_number(client, team):
    response = client.post("/teams/switch/", {"team": team, "next": "/"})
    assert response.status_code == 302  # (it was a 500: found by a review of the first fix)


def test_a_grants_rate_past_the_column_is_refused_not_a_500(client, team):
    from mcpgateway.models import ToolServer

    # (the signed-in team's server: `team_id=1` held only while no earlier test in the process
    # had created a team, and otherwise the form refused the server, not the rate)
    server = ToolServer.objects.create(team_id=team.pk, name="srv", transport="http", url="https://mcp.example.com/mcp")
    response = client.post("/tools/access/grants/", {"target": f"server:{server.pk}", "principal": "team",
                                                     "calls_per_minute": "99999999999"})
    assert response.status_code == 400 and "at most 1,000,000" in response.content.decode()

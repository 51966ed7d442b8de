"""Limits on the usage page: owners and builders add, edit and delete; values and targets are validated."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client

from mcpgateway.actions.access import do_create_api_key
from orchestrator.actions import do_create_team
from orchestrator.actions.errors import ActionError
from orchestrator.actions.limits import do_save_limit
from orchestrator.models import Limit
from tests.conftest import scripted

pytestmark = pytest.mark.django_db


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_it_adds_a_team_limit(team, owner):
    response = login(owner).post("/usage/limits/", {"scope": "team", "kind": "usd_per_day", "value": "12.5"})

    assert response.status_code == 302
    limit = Limit.objects.get()
    assert (limit.team, limit.scope, limit.kind, limit.value) == (team, "team", "usd_per_day", Decimal("12.5"))
    assert "$12.5" in login(owner).get("/usage/").content.decode()


def test_it_adds_a_limit_for_an_agent(team, owner):
    agent = scripted(team, "coder")

    login(owner).post("/usage/limits/", {"scope": "agent", "target": f"agent:{agent.pk}", "kind": "tokens_per_day",
                                         "value": "50000"})

    limit = Limit.objects.get()
    assert (limit.scope, limit.agent, limit.value) == ("agent", agent, 50000)


def test_it_adds_limits_for_an_api_key_and_a_member(team, owner, teammate):
    key, _ = do_create_api_key(team.pk, "ci", owner)
    client = login(owner)

    client.post("/usage/limits/", {"scope": "api_key", "target": f"api_key:{key.pk}", "kind": "requests_per_minute",
                                   "value": "60"})
    client.post("/usage/limits/", {"scope": "user", "target": f"user:{teammate.pk}", "kind": "concurrent_runs",
                                   "value": "2"})

    assert Limit.objects.get(scope="api_key").api_key_id == key.pk
    assert Limit.objects.get(scope="user").user == teammate


@pytest.mark.parametrize(("value", "message"), [
    ("0", "greater than zero"),
    ("-3", "greater than zero"),
    ("lots", "enter a number"),
    ("1.5", "whole units"),
    ("", "enter a number"),
])
def test_it_refuses_values_that_are_not_positive_numbers(team, owner, value, message):
    response = login(owner).post("/usage/limits/", {"scope": "team", "kind": "tokens_per_day", "value": value})

    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Limit.objects.exists()


def test_it_requires_a_target_for_every_scope_but_team(team, owner):
    response = login(owner).post("/usage/limits/", {"scope": "agent", "target": "", "kind": "tokens_per_day",
                                                    "value": "10"})

    assert response.status_code == 400
    assert "choose the agent this limit applies to" in response.content.decode()
    assert not Limit.objects.exists()


def test_it_refuses_a_target_of_the_wrong_kind_or_another_team(team, owner, outsider):
    other = scripted(do_create_team("Elsewhere", outsider), "theirs")
    mine = scripted(team, "mine")
    client = login(owner)

    wrong_kind = client.post("/usage/limits/", {"scope": "pipeline", "target": f"agent:{mine.pk}",
                                                "kind": "tokens_per_day", "value": "10"})
    foreign = client.post("/usage/limits/", {"scope": "agent", "target": f"agent:{other.pk}",
                                             "kind": "tokens_per_day", "value": "10"})

    assert wrong_kind.status_code == 400 and foreign.status_code == 400
    assert "no such agent in this team" in foreign.content.decode()
    assert not Limit.objects.exists()


def test_it_refuses_a_second_limit_of_the_same_kind_for_the_same_target(team):
    do_save_limit(team, "team", "usd_per_month", "100")

    with pytest.raises(ActionError) as caught:
        do_save_limit(team, "team", "usd_per_month", "200")

    assert caught.value.field == "kind"


def test_it_edits_a_limit(team, owner):
    limit = do_save_limit(team, "team", "usd_per_day", "5")
    client = login(owner)

    form = client.get(f"/usage/limits/{limit.pk}/edit/").content.decode()
    response = client.post(f"/usage/limits/{limit.pk}/edit/", {"scope": "team", "kind": "usd_per_day", "value": "7.25"})

    assert 'value="5"' in form
    assert response.status_code == 302
    limit.refresh_from_db()
    assert limit.value == Decimal("7.25")
    assert Limit.objects.count() == 1


def test_it_deletes_a_limit(team, owner):
    limit = do_save_limit(team, "team", "usd_per_day", "5")

    login(owner).post(f"/usage/limits/{limit.pk}/delete/")

    assert not Limit.objects.exists()


def test_it_lets_viewers_read_limits_but_not_change_them(team, teammate):
    limit = do_save_limit(team, "team", "usd_per_day", "5")
    client = login(teammate)

    page = client.get("/usage/").content.decode()
    assert "Dollars per day" in page and "Add limit" not in page and "/delete/" not in page
    assert client.post("/usage/limits/", {"scope": "team", "kind": "usd_per_month", "value": "1"}).status_code == 403
    assert client.post(f"/usage/limits/{limit.pk}/edit/", {"scope": "team", "kind": "usd_per_day",
                                                           "value": "9"}).status_code == 403
    assert client.post(f"/usage/limits/{limit.pk}/delete/").status_code == 403
    limit.refresh_from_db()
    assert limit.value == 5


def test_it_does_not_touch_another_teams_limits(team, outsider):
    limit = do_save_limit(team, "team", "usd_per_day", "5")
    do_create_team("Elsewhere", outsider)
    client = login(outsider)

    assert client.get(f"/usage/limits/{limit.pk}/edit/").status_code == 404
    assert client.post(f"/usage/limits/{limit.pk}/delete/").status_code == 404
    assert Limit.objects.filter(pk=limit.pk).exists()

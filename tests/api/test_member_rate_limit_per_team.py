"""A member's per-minute request limit is one team's limit: requests the member makes in another
team must not count against it (the counter was per user across all teams; found by a review)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from mcpgateway.actions.access import do_create_api_key
from orchestrator.actions import do_add_member, do_create_team
from orchestrator.actions.limits import do_save_limit

pytestmark = pytest.mark.django_db(transaction=True)


def test_requests_in_one_team_do_not_use_up_another_teams_member_limit(api):
    User = get_user_model()
    alice = User.objects.create_user("alice")
    team_a = do_create_team("A", User.objects.create_user("owner-a"))
    team_b = do_create_team("B", User.objects.create_user("owner-b"))
    do_add_member(team_a, alice, "builder")
    do_add_member(team_b, alice, "builder")
    key_a = do_create_api_key(team_a.pk, "a", alice, scopes=["read"])[1]
    key_b = do_create_api_key(team_b.pk, "b", alice, scopes=["read"])[1]
    do_save_limit(team_a, "user", "requests_per_minute", 1000, alice.pk)  # team A: generous
    do_save_limit(team_b, "user", "requests_per_minute", 3, alice.pk)     # team B: 3 a minute

    for _ in range(3):
        status, _ = api.call("get", "/agents", key_a)  # alice works in team A
        assert status == 200
    status, body = api.call("get", "/agents", key_b)  # her first request in team B this minute
    assert status == 200, body
    for _ in range(2):
        assert api.call("get", "/agents", key_b)[0] == 200
    status, body = api.call("get", "/agents", key_b)  # the 4th in team B: over its limit of 3
    assert status == 429 and "3 requests per minute for this user" in str(body), (status, body)

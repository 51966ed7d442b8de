"""API fixtures: keys for each role of one team, and a client that sends them."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from mcpgateway.actions.access import do_create_api_key
from orchestrator.actions import do_add_member, do_create_team
from tests.conftest import scripted


class Api:
    """`api.get("/runs", token)` → (status, json)."""

    def __init__(self) -> None:
        self.client = Client()

    def call(self, method: str, path: str, token: str | None, body=None, **headers):
        kwargs = {"content_type": "application/json"} if body is not None else {}
        if token:
            headers["HTTP_AUTHORIZATION"] = f"Bearer {token}"
        import json

        response = getattr(self.client, method)(f"/api/v1{path}", json.dumps(body) if body is not None else None,
                                                **kwargs, **headers) if method != "get" else \
            self.client.get(f"/api/v1{path}", **headers)
        data = response.json() if response.get("Content-Type", "").startswith("application/json") and response.content else None
        return response.status_code, data


@pytest.fixture
def api() -> Api:
    return Api()


@pytest.fixture
def keys(db):
    """Tokens for an owner, builder, reviewer and viewer of team A, and an owner of team B."""
    User = get_user_model()
    users = {role: User.objects.create_user(role) for role in ("owner", "builder", "reviewer", "viewer", "other")}
    team = do_create_team("A", users["owner"])
    other = do_create_team("B", users["other"])
    for role in ("builder", "reviewer", "viewer"):
        do_add_member(team, users[role], role)
    tokens = {role: do_create_api_key(team.pk, role, users[role], scopes=["read", "run", "admin"])[1]
              for role in ("owner", "builder", "reviewer", "viewer")}
    tokens["other"] = do_create_api_key(other.pk, "other", users["other"], scopes=["read", "run", "admin"])[1]
    tokens["readonly"] = do_create_api_key(team.pk, "ro", users["owner"], scopes=["read"])[1]
    scripted(team, "w", {"text": "done"})
    return {"team": team, "other_team": other, "users": users, **tokens}

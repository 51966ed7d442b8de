"""Every endpoint's authorisation across roles and teams, table-driven: no cross-team reads or
writes, viewers cannot mutate, a read-only key cannot write, no credential gets 401."""

from __future__ import annotations

import pytest

from orchestrator.actions import do_start_run
from orchestrator.models import Agent, ReviewItem
from tests.conftest import execute, pipeline

pytestmark = pytest.mark.django_db(transaction=True)

GATE = {"steps": [{"kind": "review", "id": "g", "instructions": "ok?"}, {"kind": "agent", "id": "a", "agent": "w", "prompt": "x"}]}


@pytest.fixture
def objects(keys, monkeypatch):
    from orchestrator.runners.inline import InlineRunner

    monkeypatch.setattr(InlineRunner, "submit", lambda self, run_id: None)
    pipe = pipeline(keys["team"], GATE)
    run = execute(do_start_run(pipe.latest_version(), {}, submit=False))
    return {"pipe": pipe.pk, "run": run.pk, "agent": Agent.objects.get(team=keys["team"], name="w").pk,
            "review": ReviewItem.objects.get(run=run).pk}


# (method, path, body, minimum role) — "viewer" operations are reads.
OPERATIONS = [
    ("get", "/agents", None, "viewer"),
    ("get", "/agents/{agent}", None, "viewer"),
    ("post", "/agents", {"name": "new-{role}"}, "builder"),
    ("patch", "/agents/{agent}", {"description": "changed"}, "builder"),
    ("get", "/pipelines", None, "viewer"),
    ("get", "/pipelines/{pipe}", None, "viewer"),
    ("get", "/pipelines/{pipe}/versions", None, "viewer"),
    ("post", "/pipelines/{pipe}/versions", {"spec": GATE, "note": "again"}, "builder"),
    ("post", "/pipelines", {"name": "Another {role}", "spec": GATE}, "builder"),
    ("get", "/runs", None, "viewer"),
    ("get", "/runs/{run}", None, "viewer"),
    ("get", "/runs/{run}/steps", None, "viewer"),
    ("get", "/runs/{run}/events", None, "viewer"),
    ("post", "/runs", {"pipeline": "{pipe}", "input": {}}, "builder"),
    ("get", "/reviews", None, "viewer"),
    ("post", "/reviews/{review}/claim", None, "reviewer"),
    ("get", "/usage", None, "viewer"),
    ("get", "/limits", None, "viewer"),
    ("get", "/gateway/servers", None, "viewer"),
    ("post", "/gateway/servers", {"name": "srv-{role}", "transport": "http", "url": "https://93.184.216.34/mcp"}, "builder"),
    ("get", "/gateway/tools", None, "viewer"),
    ("get", "/gateway/grants", None, "viewer"),
    ("get", "/gateway/audit", None, "viewer"),
    ("get", "/gateway/api-keys", None, "owner"),
    ("post", "/gateway/api-keys", {"name": "k-{role}", "scopes": ["read"]}, "owner"),
]
RANK = {"viewer": 0, "reviewer": 1, "builder": 2, "owner": 3}


def _fill(value, objects):
    if isinstance(value, str):
        if value.startswith("{") and value.endswith("}") and value[1:-1] in objects:
            return objects[value[1:-1]]
        return value.format(**objects)
    if isinstance(value, dict):
        return {k: _fill(v, objects) for k, v in value.items()}
    return value


@pytest.mark.parametrize(("method", "path", "body", "needs"), OPERATIONS, ids=[f"{m} {p}" for m, p, _, _ in OPERATIONS])
def test_it_enforces_roles_and_teams(api, keys, objects, method, path, body, needs):
    url = path.format(**objects)
    for role in ("viewer", "reviewer", "builder", "owner"):
        status, answer = api.call(method, url, keys[role], _fill(body, {**objects, "role": role}))
        if RANK[role] >= RANK[needs]:
            assert status in (200, 201), f"{role} {method} {url}: {status} {answer}"
        else:
            assert status == 403, f"{role} {method} {url}: {status} {answer}"
            assert answer["error"]["code"] == "forbidden"
    filled = _fill(body, {**objects, "role": "x"})
    other_status, _ = api.call(method, url, keys["other"], filled)
    if "{" in path:
        assert other_status == 404, f"other team {method} {url}: {other_status}"
    elif method == "get":
        _, listing = api.call(method, url, keys["other"])
        assert listing == [] or listing is None or all(item.get("id") not in objects.values() for item in listing)
    anonymous, answer = api.call(method, url, None, filled)
    assert anonymous == 401 and answer["error"]["code"] == "unauthenticated"
    if needs != "viewer":
        readonly, answer = api.call(method, url, keys["readonly"], filled)
        assert readonly == 403 and "scope" in answer["error"]["message"]


def test_it_lets_only_reviewers_decide(api, keys, objects):
    status, _ = api.call("post", f"/reviews/{objects['review']}/decide", keys["viewer"], {"action": "approve"})
    assert status == 403
    status, body = api.call("post", f"/reviews/{objects['review']}/decide", keys["reviewer"], {"action": "approve"})
    assert status == 200 and body["status"] == "approved"
    status, body = api.call("post", f"/reviews/{objects['review']}/decide", keys["reviewer"], {"action": "approve"})
    assert status == 409


def test_it_refuses_a_revoked_key(api, keys):
    from mcpgateway.actions.access import do_revoke_api_key
    from mcpgateway.models import ApiKey

    do_revoke_api_key(ApiKey.objects.get(name="viewer"))
    status, _ = api.call("get", "/runs", keys["viewer"])
    assert status == 401


def test_it_checks_csrf_for_the_browser_session(keys):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(keys["users"]["owner"])
    assert browser.get("/api/v1/runs").status_code == 200
    refused = browser.post("/api/v1/agents", {"name": "via-session"}, content_type="application/json")
    assert refused.status_code in (401, 403)
    assert not Agent.objects.filter(name="via-session").exists()

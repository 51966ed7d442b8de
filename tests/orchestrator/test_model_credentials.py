# ruff: noqa: F811  (pytest fixtures imported from tests/api/conftest.py are parameters here)
"""Model credentials per team: the key a team stores is what the provider receives, it is never
shown back, only owners manage it, and an instance operator's environment key reaches only the
teams it is shared with. Real SDKs against the loopback fake providers."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.test import Client

from orchestrator.actions.credentials import do_offer_instance_credential
from orchestrator.models import Agent, ModelCredential, Team
from tests.api.conftest import api, keys  # noqa: F401  (the API client and a key per role)
from tests.conftest import execute, pipeline, start
from tests.fakes.openai_server import FakeOpenAIServer

pytestmark = pytest.mark.django_db(transaction=True)

TEAM_KEY = "sk-team-Zq8w1x9Vt3"
SPEC = {"steps": [{"kind": "agent", "id": "ask", "agent": "asker", "prompt": "Say hi"}]}


@pytest.fixture
def fake(settings):
    settings.AGENTDECK_OUTBOUND_ALLOW = ["127.0.0.1"]  # the fake provider listens on loopback
    with FakeOpenAIServer() as server:
        yield server


def _credential(api, keys, fake, key: str = TEAM_KEY) -> dict:
    status, body = api.call("post", "/credentials", keys["owner"],
                            {"name": "team-openai", "provider": "openai", "key": key, "base_url": fake.base_url})
    assert status == 201, body
    return body


def _agent(api, keys, credential_id: int) -> dict:
    status, body = api.call("post", "/agents", keys["builder"], {"name": "asker", "provider": "openai",
                                                                 "model": "test-model", "credential": credential_id})
    assert status == 201, body
    return body


def _run(team: Team):
    return execute(start(pipeline(team, SPEC)))


def test_it_sends_the_team_credential_key_to_the_provider(api, keys, fake):
    credential = _credential(api, keys, fake)
    agent = _agent(api, keys, credential["id"])
    fake.push(text=["Hi", "!"])
    run = _run(keys["team"])
    assert run.status == "succeeded", run.error
    assert agent["credential"] == credential["id"]
    assert fake.requests[0].headers["authorization"] == f"Bearer {TEAM_KEY}"


def test_it_never_shows_the_key_back(api, keys, fake):
    created = _credential(api, keys, fake)
    _agent(api, keys, created["id"])
    answers = [created, api.call("get", "/credentials", keys["owner"])[1],
               api.call("get", f"/credentials/{created['id']}", keys["viewer"])[1],
               api.call("patch", f"/credentials/{created['id']}", keys["owner"], {"name": "renamed"})[1]]
    browser = Client()
    browser.force_login(keys["users"]["owner"])
    pages = [browser.get("/agents/credentials/").content.decode(),
             browser.get(f"/agents/credentials/{created['id']}/edit/").content.decode(),
             browser.get(f"/agents/{Agent.objects.get(name='asker').pk}/edit/").content.decode()]
    assert all(TEAM_KEY not in str(answer) and TEAM_KEY[-4:] not in str(answer) for answer in answers)
    assert "renamed" in pages[0] and all(TEAM_KEY not in page for page in pages)
    assert TEAM_KEY not in ModelCredential.objects.get().key_encrypted


def test_it_rotates_the_key(api, keys, fake):
    credential = _credential(api, keys, fake)
    _agent(api, keys, credential["id"])
    status, _ = api.call("patch", f"/credentials/{credential['id']}", keys["owner"], {"key": "sk-rotated-2"})
    assert status == 200
    fake.push(text="ok")
    assert _run(keys["team"]).status == "succeeded"
    assert fake.requests[0].headers["authorization"] == "Bearer sk-rotated-2"


@pytest.mark.parametrize("role", ["builder", "viewer"])
def test_it_lets_only_owners_add_credentials(api, keys, role):
    status, body = api.call("post", "/credentials", keys[role], {"name": "c", "provider": "openai", "key": "sk-1"})
    assert status == 403, body
    assert not ModelCredential.objects.exists()


def test_it_refuses_to_delete_a_credential_agents_use(api, keys, fake):
    credential = _credential(api, keys, fake)
    _agent(api, keys, credential["id"])
    status, body = api.call("delete", f"/credentials/{credential['id']}", keys["owner"])
    assert (status, body["error"]["field"]) == (409, "credential")
    assert ModelCredential.objects.filter(pk=credential["id"]).exists()


def test_it_refuses_another_teams_credential(api, keys, fake):
    status, body = api.call("post", "/credentials", keys["other"], {"name": "theirs", "provider": "openai", "key": "sk-b"})
    assert status == 201
    status, answer = api.call("post", "/agents", keys["builder"],
                              {"name": "thief", "provider": "openai", "model": "m", "credential": body["id"]})
    assert (status, answer["error"]["field"]) == (400, "credential")
    assert api.call("get", f"/credentials/{body['id']}", keys["owner"])[0] == 404


def test_it_offers_an_instance_env_key_only_to_the_teams_an_operator_picks(api, keys, fake, monkeypatch):
    monkeypatch.setenv("OPS_OPENAI_KEY", "sk-instance-Kk42")
    offered = do_offer_instance_credential(True, {"name": "company key", "provider": "openai",
                                                  "env_var": "OPS_OPENAI_KEY", "base_url": fake.base_url},
                                           [keys["team"]])
    listed = api.call("get", "/credentials", keys["viewer"])[1]
    assert [(c["name"], c["shared"]) for c in listed] == [("company key", True)]
    assert "OPS_OPENAI_KEY" not in str(listed) and "sk-instance" not in str(listed)
    _agent(api, keys, offered.pk)
    fake.push(text="hi")
    assert _run(keys["team"]).status == "succeeded"
    assert fake.requests[0].headers["authorization"] == "Bearer sk-instance-Kk42"
    status, body = api.call("post", "/agents", keys["other"],
                            {"name": "x", "provider": "openai", "model": "m", "credential": offered.pk})
    assert (status, body["error"]["field"]) == (400, "credential")


def test_it_lets_only_an_operator_offer_an_instance_key(keys):
    from orchestrator.actions.errors import NotAllowed

    with pytest.raises(NotAllowed):
        do_offer_instance_credential(False, {"name": "k", "provider": "openai", "env_var": "HOME"}, [keys["team"]])


def test_it_refuses_the_provider_call_when_the_base_url_is_no_longer_allowed(api, keys, fake, settings):
    credential = _credential(api, keys, fake)
    _agent(api, keys, credential["id"])
    settings.AGENTDECK_OUTBOUND_ALLOW = []
    fake.push(text="never")
    run = _run(keys["team"])
    assert run.status != "succeeded"
    assert fake.requests == []


def test_it_lets_a_team_member_keep_options_an_operator_set(api, keys):
    agent = Agent.objects.create(team=keys["team"], name="legacy", provider="openai", model="m",
                                 options={"api_key_env": "OPENAI_API_KEY"})
    status, body = api.call("patch", f"/agents/{agent.pk}", keys["builder"],
                            {"description": "kept", "options": {"api_key_env": "OPENAI_API_KEY"}})
    assert status == 200, body
    status, body = api.call("patch", f"/agents/{agent.pk}", keys["builder"], {"options": {"api_key_env": "HOME"}})
    assert (status, body["error"]["field"]) == (422, "options.api_key_env")


def test_it_lets_an_operator_set_api_key_env(api, keys):
    user = get_user_model().objects.create_user("op", is_staff=True)
    from mcpgateway.actions.access import do_create_api_key
    from orchestrator.actions import do_add_member

    do_add_member(keys["team"], user, "builder")
    token = do_create_api_key(keys["team"].pk, "op", user, scopes=["read", "run", "admin"])[1]
    status, body = api.call("post", "/agents", token, {"name": "opagent", "provider": "openai", "model": "m",
                                                       "options": {"api_key_env": "OPENAI_API_KEY"}})
    assert status == 201, body


def test_it_refuses_api_key_env_on_the_dashboard_agent_form(keys):
    browser = Client()
    browser.force_login(keys["users"]["builder"])
    response = browser.post("/agents/new/", {"name": "formy", "provider": "openai", "model": "m", "max_tokens": 100,
                                             "max_turns": 2, "options": '{"api_key_env": "HOME"}', "defences": "{}"})
    assert response.status_code == 400
    assert "options.api_key_env" in response.content.decode()
    assert not Agent.objects.filter(name="formy").exists()


def test_it_moves_endpoint_options_into_instance_credentials_when_migrating(keys):
    from importlib import import_module

    migration = import_module("orchestrator.migrations.0013_model_credentials")
    keyed = Agent.objects.create(team=keys["team"], name="keyed", provider="openai", model="m",
                                 options={"api_key_env": "OPENAI_API_KEY", "base_url": "https://llm.example/v1"})
    odd = Agent.objects.create(team=keys["team"], name="odd", provider="openai", model="m",
                               options={"api_key_env": "METRICS_TOKEN"})
    plain = Agent.objects.create(team=keys["team"], name="plain", provider="openai", model="m",
                                 options={"api_key_env": "OPENAI_API_KEY"})
    migration.move_endpoint_options(apps, None)
    for agent in (keyed, odd, plain):
        agent.refresh_from_db()
    assert keyed.options == {} and keyed.credential.env_var == "OPENAI_API_KEY"
    assert keyed.credential.base_url == "https://llm.example/v1" and keyed.credential.team is None
    # The instance key never follows a base URL a team member chose until an operator agrees.
    assert list(keyed.credential.shared_with.all()) == []
    assert list(odd.credential.shared_with.all()) == []  # an operator decides whether to share it
    assert list(plain.credential.shared_with.all()) == [keys["team"]]


def test_it_keeps_the_instance_key_for_offered_teams_when_the_operator_says_so(keys, fake, settings):
    settings.AGENTDECK_INSTANCE_KEYS = "offered"
    settings.OPENAI_API_KEY = "sk-instance-default-9"
    settings.OPENAI_BASE_URL = fake.base_url
    Agent.objects.create(team=keys["team"], name="asker", provider="openai", model="test-model")

    refused = _run(keys["team"])
    step = refused.steps.get(key="ask")
    assert step.status in ("failed", "waiting_review") and "no openai key" in step.error
    assert fake.requests == []

    do_offer_instance_credential(True, {"name": "company key", "provider": "openai"}, [keys["team"]])
    fake.push(text="hi")
    allowed = execute(start(refused.pipeline_version.pipeline))
    assert allowed.status == "succeeded", allowed.error
    assert fake.requests[0].headers["authorization"] == "Bearer sk-instance-default-9"

"""The agents pages: list, create and edit with validation (builders and owners), and an
agent's page with its granted tools, usage and recent runs."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from mcpgateway.actions.access import do_grant
from mcpgateway.models import Tool, ToolServer
from orchestrator.actions import do_add_member, do_create_team
from orchestrator.models import Agent, UsageRecord
from tests.conftest import run_spec, scripted

pytestmark = pytest.mark.django_db(transaction=True)

SCRIPT = {"script": {"replies": [{"text": "hello"}]}}


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def form(**fields) -> dict:
    base = {"name": "coder", "description": "writes code", "provider": "scripted", "model": "scripted-1",
            "system_prompt": "You write code.", "temperature": "", "max_tokens": "1024", "max_turns": "8",
            "options": json.dumps(SCRIPT)}
    return {**base, **fields}


@pytest.fixture
def builder(team):
    user = get_user_model().objects.create_user("bea", password="pw-bea-12345")
    do_add_member(team, user, "builder")
    return user


def test_it_creates_an_agent(team, builder):
    response = login(builder).post("/agents/new/", form(temperature="0.3"))

    agent = Agent.objects.get(team=team, name="coder")
    assert response.status_code == 302 and response["Location"] == f"/agents/{agent.pk}/"
    assert (agent.provider, agent.model, agent.temperature, agent.options) == ("scripted", "scripted-1", 0.3, SCRIPT)


def test_it_offers_the_registered_providers(team, builder):
    page = login(builder).get("/agents/new/").content.decode()

    for name in ("anthropic", "openai", "scripted"):
        assert f'value="{name}"' in page
    assert "Scripted (deterministic test provider, not a real model)" in page


def test_it_puts_bad_options_json_on_the_options_field(team, builder):
    response = login(builder).post("/agents/new/", form(options="{not json"))

    page = response.content.decode()
    assert response.status_code == 400
    assert "field-options has-error" in page and "not valid JSON" in page
    assert not Agent.objects.exists()


@pytest.mark.parametrize(("options", "message"), [
    ("[1, 2]", "must be a JSON object"),
    ('{"script": {"replies": [{"txt": "typo"}]}}', "replies.0.txt"),
])
def test_it_checks_the_options_object_and_the_scripted_providers_script(team, builder, options, message):
    response = login(builder).post("/agents/new/", form(options=options))

    page = response.content.decode()
    assert response.status_code == 400
    assert "field-options has-error" in page and message in page


@pytest.mark.parametrize(("fields", "field"), [
    ({"name": "has spaces"}, "name"),
    ({"temperature": "3"}, "temperature"),
    ({"max_tokens": "0"}, "max_tokens"),
    ({"max_turns": "abc"}, "max_turns"),
    ({"model": ""}, "model"),
])
def test_it_names_the_bad_field(team, builder, fields, field):
    response = login(builder).post("/agents/new/", form(**fields))

    assert response.status_code == 400
    assert f"field-{field} has-error" in response.content.decode()
    assert not Agent.objects.exists()


def test_it_refuses_a_duplicate_name(team, builder):
    scripted(team, "coder")

    response = login(builder).post("/agents/new/", form())

    assert response.status_code == 400 and "exists already" in response.content.decode()


def test_it_edits_an_agent_but_keeps_its_name(team, builder):
    agent = scripted(team, "coder")

    response = login(builder).post(f"/agents/{agent.pk}/edit/", form(name="renamed", model="scripted-2",
                                                                     system_prompt="Be brief."))

    assert response.status_code == 302
    agent.refresh_from_db()
    assert (agent.name, agent.model, agent.system_prompt) == ("coder", "scripted-2", "Be brief.")


def test_it_prefills_the_edit_form(team, builder):
    agent = scripted(team, "coder", {"text": "hi"}, system_prompt="Terse <b>please</b>")

    page = login(builder).get(f"/agents/{agent.pk}/edit/").content.decode()

    assert "Terse &lt;b&gt;please&lt;/b&gt;" in page
    assert "&quot;replies&quot;" in page


def test_it_lets_viewers_see_agents_but_not_edit_them(team, teammate):
    agent = scripted(team, "coder")
    client = login(teammate)

    assert client.get("/agents/").status_code == 200
    assert "New agent" not in client.get("/agents/").content.decode()
    assert client.get("/agents/new/").status_code == 403
    assert client.post("/agents/new/", form(name="other")).status_code == 403
    assert client.post(f"/agents/{agent.pk}/edit/", form(model="changed")).status_code == 403
    agent.refresh_from_db()
    assert agent.model == "scripted-1" and not Agent.objects.filter(name="other").exists()


def test_it_keeps_other_teams_agents_out_of_reach(team, builder, outsider):
    theirs = scripted(do_create_team("Elsewhere", outsider), "theirs")
    client = login(builder)

    assert client.get(f"/agents/{theirs.pk}/").status_code == 404
    assert client.post(f"/agents/{theirs.pk}/edit/", form(name="theirs")).status_code == 404
    assert "theirs" not in client.get("/agents/").content.decode()


def test_it_shows_granted_tools_usage_and_recent_runs(team, owner):
    agent = scripted(team, "coder", {"text": "done"})
    server = ToolServer.objects.create(team_id=team.pk, name="code", command="true")
    for name in ("lint", "scan"):
        Tool.objects.create(server=server, name=name, description=f"{name} code")
    files = ToolServer.objects.create(team_id=team.pk, name="files", command="true")
    read = Tool.objects.create(server=files, name="read")
    Tool.objects.create(server=files, name="delete")
    do_grant(server, agent="coder")
    do_grant(files, agent="coder", tool=read)
    do_grant(files, agent="someone-else")
    run = run_spec(team, {"steps": [{"kind": "agent", "id": "s", "agent": "coder", "prompt": "go"}]})
    UsageRecord.objects.create(team=team, agent=agent, provider="scripted", model="scripted-1", input_tokens=1000,
                               output_tokens=500, cost_usd=Decimal("0.25"))

    page = login(owner).get(f"/agents/{agent.pk}/").content.decode()

    assert "code__*" in page and ">lint<" in page and ">scan<" in page
    assert "files__read" in page and ">delete<" not in page
    assert f'href="/runs/{run.pk}/"' in page
    assert "$0.25" in page
    assert '<canvas data-chart="tokens"' in page and 'id="usage-data"' in page

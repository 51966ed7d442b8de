# Found by an outside review (2026-12-07, agent edit form); failed before its fix.
"""Two builders editing the same agent: the edit page carries the agent's `updated_at` it was
opened on, and a save from a page opened before another builder's save is refused (409, the
typed values kept) instead of silently writing back the older values it shows."""

from __future__ import annotations

import html
import json
import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from orchestrator.actions import do_add_member
from orchestrator.actions.agents import do_save_agent
from orchestrator.actions.errors import Conflict
from orchestrator.models import Agent

pytestmark = pytest.mark.django_db(transaction=True)


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def form(**fields) -> dict:
    base = {"name": "helper", "provider": "scripted", "model_choice": "scripted:scripted-1", "max_tokens": "1024",
            "max_turns": "8", "script": json.dumps({"replies": [{"text": "hi"}]}), "options": "{}",
            "defence_detector": "off", "defence_dataflow": "off", "system_prompt": "", "temperature": ""}
    return {**base, **fields}


def hidden_inputs(page: str) -> dict[str, str]:
    """The edit page's hidden fields (its version token), csrf aside."""
    found = {}
    for tag in re.findall(r"<input[^>]*type=\"hidden\"[^>]*>", page):
        name = re.search(r'name="([^"]+)"', tag)
        value = re.search(r'value="([^"]*)"', tag)
        if name and name.group(1) != "csrfmiddlewaretoken":
            found[name.group(1)] = html.unescape(value.group(1)) if value else ""
    return found


@pytest.fixture
def builders(team) -> tuple[Client, Client]:
    users = get_user_model().objects
    alice, bob = users.create_user("alice"), users.create_user("bob")
    do_add_member(team, alice, "builder")
    do_add_member(team, bob, "builder")
    return login(alice), login(bob)


@pytest.fixture
def agent(team, builders) -> Agent:
    assert builders[0].post("/agents/new/", form()).status_code == 302
    return Agent.objects.get(team=team, name="helper")


def edit_page(client: Client, agent: Agent) -> dict[str, str]:
    return hidden_inputs(client.get(f"/agents/{agent.pk}/edit/").content.decode())


def test_it_refuses_a_save_from_a_page_opened_before_another_builders_save(builders, agent):
    a, b = builders
    page_a, page_b = edit_page(a, agent), edit_page(b, agent)
    assert a.post(f"/agents/{agent.pk}/edit/", {**form(system_prompt="Never touch production."), **page_a}).status_code == 302

    stale = b.post(f"/agents/{agent.pk}/edit/", {**form(temperature="0.2", description="Bob's words"), **page_b})

    agent.refresh_from_db()
    assert (agent.system_prompt, agent.temperature, agent.description) == ("Never touch production.", None, "")
    assert stale.status_code == 409
    text = html.unescape(stale.content.decode())
    assert "was saved by someone else" in text and "nothing was saved" in text
    assert 'value="Bob\'s words"' in text and 'value="0.2"' in text  # what Bob typed, to apply on a fresh page


def test_it_saves_from_a_page_opened_after_the_other_save(builders, agent):
    a, b = builders
    assert a.post(f"/agents/{agent.pk}/edit/", {**form(system_prompt="Be brief."), **edit_page(a, agent)}).status_code == 302

    saved = b.post(f"/agents/{agent.pk}/edit/", {**form(system_prompt="Be brief.", temperature="0.2"), **edit_page(b, agent)})

    assert saved.status_code == 302
    agent.refresh_from_db()
    assert (agent.system_prompt, agent.temperature) == ("Be brief.", 0.2)


def test_it_refuses_a_second_save_from_the_same_page(builders, agent):
    a, _ = builders
    page = edit_page(a, agent)
    assert a.post(f"/agents/{agent.pk}/edit/", {**form(system_prompt="first"), **page}).status_code == 302

    assert a.post(f"/agents/{agent.pk}/edit/", {**form(system_prompt="second"), **page}).status_code == 409

    agent.refresh_from_db()
    assert agent.system_prompt == "first"


def test_it_refuses_an_unreadable_version(builders, agent):
    a, _ = builders

    answer = a.post(f"/agents/{agent.pk}/edit/", {**form(system_prompt="x"), "base_updated_at": "yesterday"})

    assert answer.status_code == 400 and "unreadable" in answer.content.decode()
    agent.refresh_from_db()
    assert agent.system_prompt == ""


def test_the_action_refuses_a_stale_base_and_writes_nothing(team, agent):
    opened = agent.updated_at
    do_save_agent(team, {"system_prompt": "newer"}, Agent.objects.get(pk=agent.pk), base_updated_at=opened)

    with pytest.raises(Conflict) as refused:
        do_save_agent(team, {"max_turns": 3}, Agent.objects.get(pk=agent.pk), base_updated_at=opened)

    assert refused.value.field == "base_updated_at"
    agent.refresh_from_db()
    assert (agent.system_prompt, agent.max_turns) == ("newer", 8)

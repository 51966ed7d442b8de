"""The agent form without raw JSON (model from the known models and price table or typed,
options and defences as inputs, defence fields read from the engine's model), and the
"try it" panel's endpoint (a recorded try run)."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from mcpgateway.actions.access import do_grant
from mcpgateway.models import AuditEntry, Tool, ToolServer
from orchestrator.actions import do_add_member
from orchestrator.actions.try_runs import is_try_pipeline
from orchestrator.engine.defences import Defences
from orchestrator.models import Agent, ModelPrice, Run, UsageRecord
from tests.conftest import scripted

pytestmark = pytest.mark.django_db(transaction=True)


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def builder(team):
    user = get_user_model().objects.create_user("bea", password="pw-bea-12345")
    do_add_member(team, user, "builder")
    return user


def form(**fields) -> dict:
    base = {"name": "helper", "provider": "scripted", "model_choice": "scripted:scripted-1", "max_tokens": "1024",
            "max_turns": "8", "script": json.dumps({"replies": [{"text": "hi"}]}), "options": "{}",
            "defence_detector": "off", "defence_dataflow": "off"}
    return {**base, **fields}


def test_it_offers_known_models_with_their_prices_and_other(team, builder):
    ModelPrice.objects.create(provider="openai", model="my-finetune", input_per_mtok=Decimal("2"),
                              output_per_mtok=Decimal("8"))
    ModelPrice.objects.create(provider="anthropic", model="claude-sonnet-4*", input_per_mtok=Decimal("3"),
                              output_per_mtok=Decimal("15"))

    page = login(builder).get("/agents/new/").content.decode()

    assert 'value="openai:my-finetune"' in page and "my-finetune — $2 / $8 per M tokens" in page
    assert "claude-sonnet-4-5 — $3 / $15 per M tokens" in page
    assert 'value="__other__"' in page and 'name="model"' in page
    assert 'name="options"' in page and "Other options (JSON)" in page


def test_it_saves_a_model_from_the_list_and_a_typed_one(team, builder):
    client = login(builder)

    assert client.post("/agents/new/", form(provider="openai", model_choice="openai:gpt-4o-mini",
                                            max_tokens_field="max_completion_tokens")).status_code == 302
    assert client.post("/agents/new/", form(name="local", provider="openai", model_choice="__other__",
                                            model="llama3.1:8b", script="")).status_code == 302

    helper = Agent.objects.get(name="helper")
    assert helper.model == "gpt-4o-mini"
    assert helper.options == {"max_tokens_field": "max_completion_tokens"}  # the hidden scripted field is not kept
    assert Agent.objects.get(name="local").model == "llama3.1:8b"


def test_it_refuses_a_listed_model_of_another_provider_or_no_model(team, builder):
    client = login(builder)

    wrong = client.post("/agents/new/", form(provider="anthropic", model_choice="openai:gpt-4o"))
    empty = client.post("/agents/new/", form(model_choice="__other__", model=""))

    assert wrong.status_code == 400 and "field-model_choice has-error" in wrong.content.decode()
    assert empty.status_code == 400 and "field-model has-error" in empty.content.decode()
    assert not Agent.objects.exists()


def test_it_has_an_input_for_every_defence_field_the_engine_defines(team, builder):
    page = login(builder).get("/agents/new/").content.decode()

    for name in Defences.model_fields:
        assert f'name="defence_{name}"' in page
    assert '<option value="rules">rules</option>' in page


def test_it_saves_defences_and_options_from_inputs(team, builder):
    response = login(builder).post("/agents/new/", form(
        defence_spotlight="on", defence_detector="rules", defence_confirm_tools="files__write, files__delete",
        defence_taint_allowed_tools="files__read", defence_dataflow="confirm", max_tokens_field="max_tokens",
        temperature="0.4"))

    assert response.status_code == 302
    agent = Agent.objects.get(name="helper")
    assert agent.defences == {"spotlight": True, "detector": "rules", "confirm_tools": ["files__write", "files__delete"],
                              "taint_allowed_tools": ["files__read"], "dataflow": "confirm"}
    assert agent.options == {"script": {"replies": [{"text": "hi"}]}}  # max_tokens_field is for openai only
    assert agent.temperature == 0.4
    edit = login(builder).get(f"/agents/{agent.pk}/edit/").content.decode()
    assert 'value="files__write, files__delete"' in edit and 'name="defence_spotlight" id="id_defence_spotlight" checked' in edit


def test_it_puts_a_bad_script_on_the_script_field(team, builder):
    response = login(builder).post("/agents/new/", form(script='{"replies": [{"txt": "typo"}]}'))

    assert response.status_code == 400 and "field-script has-error" in response.content.decode()


def test_it_keeps_operator_options_a_builder_cannot_see(team, builder):
    agent = Agent.objects.create(team=team, name="helper", provider="openai", model="gpt-4o",
                                 options={"base_url": "http://10.0.0.5/v1"})
    client = login(builder)

    page = client.get(f"/agents/{agent.pk}/edit/").content.decode()
    assert 'name="base_url"' not in page and "10.0.0.5" not in page
    assert client.post(f"/agents/{agent.pk}/edit/", form(provider="openai", model_choice="openai:gpt-4o", script="",
                                                         description="changed")).status_code == 302
    agent.refresh_from_db()
    assert agent.options == {"base_url": "http://10.0.0.5/v1"} and agent.description == "changed"


def _finished(run_id: int, timeout: float = 60) -> Run:
    deadline = time.monotonic() + timeout
    while True:
        run = Run.objects.get(pk=run_id)
        if run.is_finished or run.status == "waiting_review":
            return run
        assert time.monotonic() < deadline, f"run {run_id} is still {run.status}"
        time.sleep(0.1)


def test_trying_an_agent_records_a_try_run_with_its_reply(team, builder):
    agent = scripted(team, "helper", {"text": "Hello from the script"}, {"text": "Second answer"})
    client = login(builder)

    response = client.post(f"/agents/{agent.pk}/try/", {"message": "hi there"}, HTTP_ACCEPT="application/json")

    assert response.status_code == 201
    body = response.json()
    run = _finished(body["run_id"])
    assert body["ws_path"] == f"/ws/runs/{run.pk}/" and body["run_url"] == f"/runs/{run.pk}/"
    assert run.status == "succeeded" and run.output == {"reply": "Hello from the script"}
    assert is_try_pipeline(run.pipeline_version.pipeline) and run.created_by == builder
    assert UsageRecord.objects.filter(run=run, agent=agent).exists()  # budgets and usage apply
    assert f"/runs/{run.pk}/" in client.get(f"/agents/{agent.pk}/").content.decode()
    assert f'id="home-run-{run.pk}"' not in client.get("/").content.decode()  # not in the team's recent runs

    again = client.post(f"/agents/{agent.pk}/try/", {"message": "more", "history": "User: hi there\n\nAssistant: Hello"},
                        HTTP_ACCEPT="application/json").json()
    second = _finished(again["run_id"])
    assert second.pipeline_version_id == run.pipeline_version_id  # one try pipeline per agent
    assert "Assistant: Hello" in second.steps.get(key="reply").input["prompt"]


def test_a_try_run_calls_the_agents_granted_tools_through_the_gateway(team, builder):
    server = ToolServer.objects.create(team_id=team.pk, name="files", command="true")
    Tool.objects.create(server=server, name="read", description="read")
    agent = scripted(team, "helper", {"tool_calls": [{"name": "files__write", "arguments": {}}]}, {"text": "done"})
    do_grant(server, agent="other")

    run = _finished(login(builder).post(f"/agents/{agent.pk}/try/", {"message": "write it"},
                                        HTTP_ACCEPT="application/json").json()["run_id"])

    assert run.status == "succeeded"
    assert AuditEntry.objects.get(run_id=run.pk).status == "denied"  # not granted to this agent: refused and audited


def test_a_viewer_cannot_try_an_agent(team, teammate):
    agent = scripted(team, "helper", {"text": "x"})
    client = login(teammate)

    assert 'id="try-panel"' not in client.get(f"/agents/{agent.pk}/").content.decode()
    assert client.post(f"/agents/{agent.pk}/try/", {"message": "x"}).status_code == 403
    assert not Run.objects.exists()


def test_an_empty_message_starts_nothing(team, builder):
    agent = scripted(team, "helper", {"text": "x"})

    response = login(builder).post(f"/agents/{agent.pk}/try/", {"message": "  "}, HTTP_ACCEPT="application/json")

    assert response.status_code == 400 and response.json()["field"] == "message"
    assert not Run.objects.exists()

"""The home page: pipeline templates (each valid, each runs end to end with the scripted
provider), creating a pipeline from one, recent runs without eval runs, and what waits for me."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.test import Client

from mcpgateway.actions.access import do_grant
from mcpgateway.models import Grant, ToolServer
from orchestrator.actions import do_decide_review
from orchestrator.actions.pipelines import check_spec
from orchestrator.execution import execute_run
from orchestrator.models import Agent, Pipeline, ReviewItem
from orchestrator.pipeline_templates import TEMPLATES, do_create_from_template
from tests.conftest import execute, start, start_servers

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("builtins_offered")]


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def builder(team, teammate):
    team.memberships.filter(user=teammate).update(role="builder")
    return teammate


def test_it_offers_the_demo_pipelines_and_three_more_shapes():
    assert {"code-review", "code-test", "market-analysis"} <= set(TEMPLATES)
    assert {"research-brief", "support-triage", "test-first"} <= set(TEMPLATES)
    shapes = {t.shape for t in TEMPLATES.values()}
    assert {"parallel → summary", "branch + review gate", "loop + sandbox"} <= shapes


@pytest.mark.parametrize("slug", sorted(TEMPLATES))
def test_each_template_validates_against_its_own_agents(team, slug):
    template = TEMPLATES[slug]
    for name in template.agents:
        Agent.objects.create(team=team, name=name, provider="scripted", model="scripted-1")
    assert check_spec(team, template.spec).steps


@pytest.mark.parametrize("slug,expect", [
    ("market-analysis", lambda out: out["summary"].startswith("Recommendation")),
    ("research-brief", lambda out: out["brief"].startswith("Brief:") and "cheaper tools" in out["historian"]),
])
def test_the_parallel_templates_run_end_to_end(team, owner, slug, expect):
    pipeline, _ = do_create_from_template(team, slug, owner)

    run = execute(start(pipeline, TEMPLATES[slug].example_input))

    assert run.status == "succeeded", run.error
    assert expect(run.output)


def test_support_triage_pauses_urgent_tickets_for_review_and_answers_routine_ones(team, owner):
    pipeline, _ = do_create_from_template(team, "support-triage", owner)

    urgent = execute(start(pipeline, {"ticket": "The site is down!"}))
    assert urgent.status == "waiting_review", urgent.error
    item = urgent.review_items.get()
    assert "update you within the hour" in str(item.context)
    do_decide_review(item, owner, "approve", submit=False)
    urgent = execute(urgent)
    assert urgent.status == "succeeded", urgent.error
    assert urgent.output["triage"] == "urgent: outage"
    assert "within the hour" in urgent.output["reply"]

    routine = execute(start(pipeline, {"ticket": "How do I export my data?"}))
    assert routine.status == "succeeded", routine.error
    assert routine.output["reply"].startswith("Thanks for asking")


def test_the_code_review_template_installs_its_tools_and_runs(team, owner, gateway_runtime):
    pipeline, notes = do_create_from_template(team, "code-review", owner)
    server = ToolServer.objects.get(team_id=team.pk, name="code")
    assert set(Grant.objects.filter(server=server).values_list("agent_name", flat=True)) == {"security", "reviewer"}
    start_servers(gateway_runtime, server)

    run = start(pipeline, {"task": "add two numbers"})
    async_to_sync(execute_run)(run.pk)
    run.refresh_from_db()

    assert run.status == "succeeded", run.error
    assert "scanner found nothing" in run.output["security_report"] and notes == []


@pytest.mark.docker
def test_the_test_first_template_runs_in_the_sandbox(team, owner, gateway_runtime, docker_client):
    pipeline, _ = do_create_from_template(team, "test-first", owner)
    start_servers(gateway_runtime, ToolServer.objects.get(team_id=team.pk, name="sandbox"))

    run = start(pipeline, {"task": "add two numbers"})
    async_to_sync(execute_run)(run.pk)
    run.refresh_from_db()

    assert run.status == "succeeded", run.error
    assert run.output["report"].startswith("tests passed")
    keys = list(run.steps.filter(kind="agent").order_by("id").values_list("key", flat=True))
    assert keys == ["tests", "code#1", "runner#1", "code#2", "runner#2"]


def test_it_reuses_agents_and_numbers_the_pipeline_name(team, owner):
    Agent.objects.create(team=team, name="support_triage", provider="scripted", model="scripted-1",
                         system_prompt="mine")

    first, notes = do_create_from_template(team, "support-triage", owner)
    second, _ = do_create_from_template(team, "support-triage", owner)

    assert (first.name, second.name) == ("Support triage", "Support triage 2")
    assert Agent.objects.get(team=team, name="support_triage").system_prompt == "mine"
    assert notes == ["reused the team's agent support_triage"]


def test_the_home_page_shows_templates_and_points_at_them(team, owner):
    page = login(owner).get("/")

    assert page.status_code == 200
    html = page.content.decode()
    for template in TEMPLATES.values():
        assert template.name in html
    assert 'action="/templates/research-brief/create/"' in html


def test_a_builder_creates_a_pipeline_from_a_template_and_lands_on_it(team, builder):
    response = login(builder).post("/templates/research-brief/create/")

    pipeline = Pipeline.objects.get(team=team)
    assert response.status_code == 302 and str(pipeline.pk) in response["Location"]
    assert pipeline.latest_version().spec["steps"][0]["kind"] == "parallel"
    assert Agent.objects.filter(team=team, name="research_editor").exists()


def test_a_viewer_sees_templates_but_cannot_create_from_them(team, teammate):
    client = login(teammate)

    assert 'action="/templates/' not in client.get("/").content.decode()
    assert client.post("/templates/research-brief/create/").status_code == 403
    assert not Pipeline.objects.exists()


def test_recent_runs_hide_eval_runs_unless_asked(team, owner):
    pipeline, _ = do_create_from_template(team, "market-analysis", owner)
    shown = start(pipeline, {"ticker": "SHOWN"})
    other, _ = do_create_from_template(team, "market-analysis", owner)
    hidden = start(other, {"ticker": "HIDDEN"})
    Pipeline.objects.filter(pk=other.pk).update(internal=True)  # what the eval harness makes
    client = login(owner)

    html = client.get("/").content.decode()
    assert f'id="home-run-{shown.pk}"' in html and f'id="home-run-{hidden.pk}"' not in html
    assert f'id="home-run-{hidden.pk}"' in client.get("/?evals=1").content.decode()


def test_waiting_for_me_lists_review_items_i_may_decide(team, owner, teammate):
    pipeline, _ = do_create_from_template(team, "support-triage", owner)
    run = execute(start(pipeline, {"ticket": "The site is down!"}))
    item = ReviewItem.objects.get(run=run)

    mine = login(owner).get("/").content.decode()
    assert f'id="waiting-{item.pk}"' in mine
    assert f'id="waiting-{item.pk}"' not in login(teammate).get("/").content.decode()  # a viewer decides nothing


def test_it_refuses_a_template_whose_built_in_server_name_the_team_uses(team, builder, owner):
    """A team's own remote server named `code` is never turned into the built-in stdio server."""
    mine = ToolServer.objects.create(team_id=team.pk, name="code", transport="http", url="https://code.example/mcp",
                                     headers={"Authorization": "${TOKEN}"})
    do_grant(mine, agent="security")

    response = login(builder).post("/templates/code-review/create/", follow=True)

    mine.refresh_from_db()
    assert (mine.transport, mine.url, mine.headers, mine.template_id, mine.command) == (
        "http", "https://code.example/mcp", {"Authorization": "${TOKEN}"}, None, "")
    assert "already has its own server named &#x27;code&#x27;" in response.content.decode()
    assert not Pipeline.objects.exists() and not Agent.objects.filter(team=team, name="security").exists()


def test_it_reuses_its_own_built_in_server_on_a_second_creation(team, owner):
    do_create_from_template(team, "code-review", owner)
    server = ToolServer.objects.get(team_id=team.pk, name="code")

    second, _ = do_create_from_template(team, "code-review", owner)

    assert second.name.endswith(" 2") and ToolServer.objects.get(team_id=team.pk, name="code").pk == server.pk

"""Try runs use their own internal pipeline per agent, in a slug namespace no user pipeline can
take: a team pipeline named "Try writer" is never given the try spec of the agent `writer`."""

from __future__ import annotations

import time

import pytest
from django.test import Client
from django.utils.text import slugify

from orchestrator.actions import do_create_pipeline
from orchestrator.actions.try_runs import TRY_SLUG_PREFIX, is_try_pipeline
from orchestrator.models import Pipeline, Run
from tests.conftest import scripted

pytestmark = pytest.mark.django_db(transaction=True)

USER_SPEC = {"steps": [{"kind": "agent", "id": "draft", "agent": "writer", "prompt": "Draft: {{ input.topic }}"}],
             "inputs": {"topic": {"type": "string"}}}


def _finished(run_id: int, timeout: float = 60) -> Run:
    deadline = time.monotonic() + timeout
    while True:
        run = Run.objects.get(pk=run_id)
        if run.is_finished or run.status == "waiting_review":
            return run
        assert time.monotonic() < deadline, f"run {run_id} is still {run.status}"
        time.sleep(0.1)


def test_it_leaves_a_user_pipeline_named_try_writer_untouched(team, owner):
    agent = scripted(team, "writer", {"text": "Hello"})
    mine = do_create_pipeline(team, "Try writer", USER_SPEC, owner)
    before = list(mine.versions.values_list("number", "spec"))
    client = Client()
    client.force_login(owner)

    response = client.post(f"/agents/{agent.pk}/try/", {"message": "hi"}, HTTP_ACCEPT="application/json")

    assert response.status_code == 201, response.content
    run = _finished(response.json()["run_id"])
    assert run.status == "succeeded" and run.output == {"reply": "Hello"}
    mine.refresh_from_db()
    assert list(mine.versions.values_list("number", "spec")) == before and not mine.internal
    tried = run.pipeline_version.pipeline
    assert tried.pk != mine.pk and tried.internal and is_try_pipeline(tried)
    assert not is_try_pipeline(mine)


@pytest.mark.parametrize("name", ["Try writer", "try-.writer", "Try .writer", "try- writer", ".try-.writer"])
def test_no_pipeline_name_makes_a_try_slug(name):
    assert not slugify(name).startswith(TRY_SLUG_PREFIX)


def test_the_api_refuses_a_try_slug(team, owner):
    from mcpgateway.actions.access import do_create_api_key

    scripted(team, "writer", {"text": "Hello"})
    token = do_create_api_key(team.pk, "ci", owner, ["admin", "run", "read"])[1]

    def create(slug: str) -> int:
        return Client().post("/api/v1/pipelines", {"name": "Sneaky", "slug": slug, "spec": USER_SPEC},
                             content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}").status_code

    assert create(f"{TRY_SLUG_PREFIX}writer") == 422 and not Pipeline.objects.exists()
    assert create("try-writer") == 201  # the same request with an ordinary slug is accepted

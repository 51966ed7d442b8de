"""POST /api/v1/runs/{id}/fork: builders of the run's team fork a stopped run from a step."""

from __future__ import annotations

import pytest

from orchestrator.actions import do_start_run
from orchestrator.models import Run, RunEvent, StepRun, UsageRecord
from tests.conftest import execute, pipeline

pytestmark = pytest.mark.django_db(transaction=True)

SPEC = {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "one"},
                  {"kind": "agent", "id": "b", "agent": "w", "prompt": "two"},
                  {"kind": "agent", "id": "c", "agent": "w", "prompt": "three {{ steps.b.output }}"}]}


@pytest.fixture
def finished(keys):
    return execute(do_start_run(pipeline(keys["team"], SPEC).latest_version(), {}, submit=False))


@pytest.fixture
def no_submit(monkeypatch):
    from orchestrator.runners.inline import InlineRunner

    monkeypatch.setattr(InlineRunner, "submit", lambda self, run_id: None)


def test_it_forks_a_finished_run_with_an_edited_output(api, keys, finished, no_submit):
    status, body = api.call("post", f"/runs/{finished.pk}/fork", keys["builder"], {"step": "b", "output": "edited"})

    assert status == 201, body
    fork = Run.objects.get(pk=body["id"])
    assert body["status"] == "queued" and fork.pk != finished.pk
    assert RunEvent.objects.get(run=fork, type="run.forked").data["source_run"] == finished.pk
    fork = execute(fork)
    assert fork.status == "succeeded", fork.error
    assert StepRun.objects.get(run=fork, key="b").output == "edited"
    assert list(UsageRecord.objects.filter(run=fork).values_list("step_key", flat=True)) == ["c"]


def test_it_answers_errors_a_user_can_act_on(api, keys, finished, no_submit):
    status, body = api.call("post", f"/runs/{finished.pk}/fork", keys["builder"], {"step": "zzz"})
    assert status == 400 and body["error"]["field"] == "step" and "did not run" in body["error"]["message"]

    queued = do_start_run(finished.pipeline_version, {}, submit=False)
    status, body = api.call("post", f"/runs/{queued.pk}/fork", keys["builder"], {"step": "a"})
    assert status == 409 and "still queued" in body["error"]["message"]


def test_it_needs_a_builder_of_the_runs_team(api, keys, finished, no_submit):
    assert api.call("post", f"/runs/{finished.pk}/fork", keys["viewer"], {"step": "b"})[0] == 403
    assert api.call("post", f"/runs/{finished.pk}/fork", keys["readonly"], {"step": "b"})[0] == 403
    assert api.call("post", f"/runs/{finished.pk}/fork", keys["other"], {"step": "b"})[0] == 404
    assert Run.objects.count() == 1

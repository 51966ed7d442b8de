"""The runs pages over HTTP: the filtered, keyset-paginated list, the start form, cancel and resume,
and who may see and do what."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from dashboard.runs import queries
from orchestrator.actions import do_create_team, do_save_pipeline_version
from orchestrator.models import ReviewItem, Run, RunStatus
from tests.conftest import pipeline, scripted

pytestmark = pytest.mark.django_db

SPEC = {"steps": [{"kind": "agent", "id": "work", "agent": "worker", "prompt": "do {{ input.task }}"}],
        "inputs": {"task": {"type": "string", "description": "What to do."}}}
TYPED_SPEC = {
    "inputs": {
        "topic": {"type": "string"},
        "rounds": {"type": "integer"},
        "ratio": {"type": "number", "required": False},
        "strict": {"type": "boolean", "required": False},
        "options": {"type": "object", "required": False},
        "tags": {"type": "array", "required": False},
    },
    "steps": [{"kind": "agent", "id": "work", "agent": "worker", "prompt": "{{ input.topic }}"}],
}
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def worker(team):
    return scripted(team, "worker", {"text": "done"})


@pytest.fixture
def pipe(team, worker):
    return pipeline(team, SPEC, name="alpha")


def make_runs(pipe, count: int, user=None, status: str = RunStatus.SUCCEEDED, at: datetime = T0,
              step: timedelta = timedelta(minutes=1)) -> list[Run]:
    """`count` runs created `step` apart from `at` (a zero step makes them all tie on created_at)."""
    version = pipe.latest_version()
    runs = [Run.objects.create(team_id=pipe.team_id, pipeline_version=version, status=status, created_by=user)
            for _ in range(count)]
    for i, run in enumerate(runs):
        Run.objects.filter(pk=run.pk).update(created_at=at + step * i)
    return runs


def listed_ids(response) -> list[int]:
    return [run.pk for run in response.context["page"].runs]


def test_it_lists_the_teams_runs_newest_first(owner, pipe):
    runs = make_runs(pipe, 3, owner)

    response = client_for(owner).get("/runs/")

    assert response.status_code == 200
    assert listed_ids(response) == [r.pk for r in reversed(runs)]
    assert b"alpha" in response.content and b"v1" in response.content


def test_it_filters_by_status(owner, pipe):
    make_runs(pipe, 2, owner, status=RunStatus.SUCCEEDED)
    failed = make_runs(pipe, 2, owner, status=RunStatus.FAILED, at=T0 + timedelta(hours=1))

    response = client_for(owner).get("/runs/", {"status": "failed"})

    assert sorted(listed_ids(response)) == sorted(r.pk for r in failed)


def test_it_filters_by_pipeline_across_its_versions(team, owner, pipe, worker):
    other = pipeline(team, SPEC, name="beta")
    v1 = make_runs(pipe, 2, owner)
    do_save_pipeline_version(pipe, {**SPEC, "description": "v2"})
    v2 = make_runs(pipe, 1, owner, at=T0 + timedelta(hours=1))
    make_runs(other, 3, owner)

    response = client_for(owner).get("/runs/", {"pipeline": pipe.pk})

    assert sorted(listed_ids(response)) == sorted(r.pk for r in v1 + v2)


def test_it_filters_by_who_started_the_run(team, owner, teammate, pipe):
    make_runs(pipe, 2, owner)
    theirs = make_runs(pipe, 2, teammate, at=T0 + timedelta(hours=1))

    response = client_for(owner).get("/runs/", {"user": teammate.pk})

    assert sorted(listed_ids(response)) == sorted(r.pk for r in theirs)


def test_it_filters_by_date_range_inclusive_of_both_days(owner, pipe):
    runs = make_runs(pipe, 5, owner, step=timedelta(days=1))  # March 1st to 5th

    response = client_for(owner).get("/runs/", {"date_from": "2025-03-02", "date_to": "2025-03-04"})

    assert listed_ids(response) == [runs[3].pk, runs[2].pk, runs[1].pk]


def test_it_reports_an_invalid_filter_and_ignores_it(owner, pipe):
    runs = make_runs(pipe, 2, owner)

    response = client_for(owner).get("/runs/", {"status": "bogus"})

    assert response.context["form"].errors["status"]
    assert sorted(listed_ids(response)) == sorted(r.pk for r in runs)


def test_it_pages_older_by_keyset_without_duplicates_or_gaps(owner, pipe, monkeypatch):
    monkeypatch.setattr(queries, "PAGE_SIZE", 3)
    # Ties on created_at are broken by id.
    runs = make_runs(pipe, 4, owner) + make_runs(pipe, 4, owner, at=T0 + timedelta(hours=1), step=timedelta(0))
    client = client_for(owner)

    seen, url = [], "/runs/"
    while url:
        response = client.get(url)
        seen += listed_ids(response)
        url = response.context["older_url"] and "/runs/" + response.context["older_url"]

    expected = [r.pk for r in sorted(runs, key=lambda r: (Run.objects.get(pk=r.pk).created_at, r.pk), reverse=True)]
    assert seen == expected


def test_it_pages_back_to_newer_runs(owner, pipe, monkeypatch):
    monkeypatch.setattr(queries, "PAGE_SIZE", 3)
    make_runs(pipe, 8, owner, step=timedelta(0))
    client = client_for(owner)
    first = client.get("/runs/")
    second = client.get("/runs/" + first.context["older_url"])
    third = client.get("/runs/" + second.context["older_url"])

    back = client.get("/runs/" + third.context["newer_url"])

    assert listed_ids(back) == listed_ids(second)
    assert client.get("/runs/" + back.context["newer_url"]).context["newer_url"] == ""


def test_it_keeps_the_filters_in_the_page_links(owner, pipe, monkeypatch):
    monkeypatch.setattr(queries, "PAGE_SIZE", 2)
    make_runs(pipe, 5, owner, status=RunStatus.FAILED)

    response = client_for(owner).get("/runs/", {"status": "failed"})

    assert "status=failed" in response.context["older_url"] and "before=" in response.context["older_url"]


def test_it_lists_a_page_without_counting_or_offsetting(owner, pipe, monkeypatch):
    monkeypatch.setattr(queries, "PAGE_SIZE", 2)
    make_runs(pipe, 5, owner)
    client = client_for(owner)
    older = client.get("/runs/").context["older_url"]

    with CaptureQueriesContext(connection) as captured:
        client.get("/runs/" + older, {"status": "succeeded"})

    run_queries = [q["sql"] for q in captured.captured_queries if '"orchestrator_run"' in q["sql"]]
    assert run_queries and not any("COUNT(" in sql.upper() or "OFFSET" in sql.upper() for sql in run_queries)


def test_it_returns_the_table_alone_for_live_refreshes(owner, pipe):
    make_runs(pipe, 1, owner)

    response = client_for(owner).get("/runs/", HTTP_HX_REQUEST="true")

    assert b"<table" in response.content and b"<html" not in response.content


def test_it_hides_other_teams_runs_from_the_list(owner, outsider, pipe):
    make_runs(pipe, 2, owner)
    do_create_team("Elsewhere", outsider)

    response = client_for(outsider).get("/runs/")

    assert listed_ids(response) == []


def test_it_answers_404_for_another_teams_run(owner, outsider, pipe):
    (run,) = make_runs(pipe, 1, owner)
    do_create_team("Elsewhere", outsider)
    client = client_for(outsider)

    assert client.get(f"/runs/{run.pk}/").status_code == 404
    assert client.get(f"/runs/{run.pk}/fragments/").status_code == 404
    assert client.post(f"/runs/{run.pk}/cancel/").status_code == 404


def test_it_refuses_a_user_in_no_team(owner, outsider, pipe):
    (run,) = make_runs(pipe, 1, owner)

    assert client_for(outsider).get(f"/runs/{run.pk}/").status_code == 403


def test_it_sends_anonymous_visitors_to_sign_in(owner, pipe):
    (run,) = make_runs(pipe, 1, owner)

    response = Client().get(f"/runs/{run.pk}/")

    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_it_forbids_viewers_to_start_runs(teammate, pipe):
    client = client_for(teammate)

    assert client.get(f"/runs/new/?pipeline={pipe.pk}").status_code == 403
    assert client.post(f"/runs/new/?pipeline={pipe.pk}", {"input-task": "x"}).status_code == 403
    assert not Run.objects.exists()


def test_it_forbids_viewers_to_cancel_or_resume(owner, teammate, pipe):
    (run,) = make_runs(pipe, 1, owner, status=RunStatus.RUNNING)
    client = client_for(teammate)

    assert client.post(f"/runs/{run.pk}/cancel/").status_code == 403
    assert client.post(f"/runs/{run.pk}/resume/").status_code == 403
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING and not run.cancel_requested


def test_it_shows_viewers_no_action_buttons(owner, teammate, pipe):
    (run,) = make_runs(pipe, 1, owner, status=RunStatus.RUNNING)

    response = client_for(teammate).get(f"/runs/{run.pk}/")

    assert response.status_code == 200 and b"cancel-run" not in response.content


def test_it_offers_pipelines_to_choose_from_without_one(owner, pipe):
    response = client_for(owner).get("/runs/new/")

    assert response.status_code == 200 and b"alpha" in response.content


def test_it_renders_a_field_per_input_by_type(team, owner, worker):
    pipe = pipeline(team, TYPED_SPEC, name="typed")

    html = client_for(owner).get(f"/runs/new/?pipeline={pipe.pk}").content.decode()

    assert '<textarea name="input-topic"' in html
    assert 'type="number" name="input-rounds"' in html
    assert 'type="number" name="input-ratio"' in html and 'step="any"' in html
    assert 'type="checkbox" name="input-strict"' in html
    assert '<textarea name="input-options"' in html and '<textarea name="input-tags"' in html


def test_it_shows_a_missing_required_input_on_its_field(owner, pipe):
    response = client_for(owner).post(f"/runs/new/?pipeline={pipe.pk}", {"input-task": ""})

    assert response.status_code == 422
    assert response.context["form"].errors["task"] == ["input 'task' is required"]
    assert not Run.objects.exists()


def test_it_shows_values_of_the_wrong_type_on_their_fields(team, owner, worker):
    pipe = pipeline(team, TYPED_SPEC, name="typed")

    response = client_for(owner).post(f"/runs/new/?pipeline={pipe.pk}", {
        "input-topic": "t", "input-rounds": "three", "input-options": "[1, 2]", "input-tags": "{not json"})

    errors = response.context["form"].errors
    assert response.status_code == 422
    assert set(errors) == {"rounds", "options", "tags"}
    assert errors["options"] == ["must be a JSON object"] and "not valid JSON" in errors["tags"][0]
    assert b"must be a JSON object" in response.content


def test_it_starts_a_run_with_typed_input_and_opens_its_page(team, owner, worker):
    pipe = pipeline(team, TYPED_SPEC, name="typed")

    response = client_for(owner).post(f"/runs/new/?pipeline={pipe.pk}", {
        "input-topic": "markets", "input-rounds": "2", "input-strict": "on", "input-options": '{"a": 1}'})

    run = Run.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/runs/{run.pk}/"
    assert run.input == {"topic": "markets", "rounds": 2, "strict": True, "options": {"a": 1}}
    assert run.created_by == owner and run.status == RunStatus.QUEUED


def test_it_starts_the_version_asked_for(owner, pipe):
    do_save_pipeline_version(pipe, {**SPEC, "description": "second"})

    client_for(owner).post(f"/runs/new/?pipeline={pipe.pk}&version=1", {"input-task": "x"})

    assert Run.objects.get().pipeline_version.number == 1


def test_it_answers_404_for_another_teams_pipeline(owner, outsider, pipe):
    do_create_team("Elsewhere", outsider)

    assert client_for(outsider).get(f"/runs/new/?pipeline={pipe.pk}").status_code == 404


def test_it_cancels_a_queued_run(owner, pipe):
    (run,) = make_runs(pipe, 1, owner, status=RunStatus.QUEUED)

    response = client_for(owner).post(f"/runs/{run.pk}/cancel/")

    run.refresh_from_db()
    assert response.status_code == 302 and run.status == RunStatus.CANCELLED and run.cancel_requested


def test_it_says_why_a_finished_run_cannot_be_cancelled(owner, pipe):
    (run,) = make_runs(pipe, 1, owner, status=RunStatus.SUCCEEDED)

    response = client_for(owner).post(f"/runs/{run.pk}/cancel/", follow=True)

    assert "has already succeeded" in response.content.decode()


def test_it_resumes_a_failed_run(owner, pipe):
    (run,) = make_runs(pipe, 1, owner, status=RunStatus.FAILED)

    client_for(owner).post(f"/runs/{run.pk}/resume/")

    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED


def test_it_offers_resume_only_once_no_review_is_pending(owner, pipe):
    (run,) = make_runs(pipe, 1, owner, status=RunStatus.WAITING_REVIEW)
    item = ReviewItem.objects.create(team_id=run.team_id, run=run, step_key="work", reason="gate")
    client = client_for(owner)

    assert b"resume-run" not in client.get(f"/runs/{run.pk}/").content
    ReviewItem.objects.filter(pk=item.pk).update(status=ReviewItem.Status.APPROVED)
    assert b"resume-run" in client.get(f"/runs/{run.pk}/").content

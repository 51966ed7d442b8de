"""The dashboard's doors refuse what the API refuses (deep specs, NUL characters), stored
versions that are already deep still render, and review assignment names no outsiders."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from orchestrator.actions import do_add_member, do_create_pipeline, do_create_team, do_start_run
from orchestrator.engine.document_guard import MAX_DOCUMENT_DEPTH
from orchestrator.engine.spec_bounds import MAX_NESTING
from orchestrator.models import PipelineVersion
from tests.conftest import run_spec, scripted

pytestmark = pytest.mark.django_db(transaction=True)

AGENT = {"kind": "agent", "id": "a", "agent": "writer", "prompt": "hi"}


def nested(levels: int) -> dict[str, Any]:
    step: dict[str, Any] = dict(AGENT)
    for i in range(levels):
        step = {"kind": "sequence", "id": f"s{i}", "steps": [step]}
    return {"steps": [step]}


def deep_list(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = [value]
    return value


@pytest.fixture
def builder(team):
    user = get_user_model().objects.create_user("builder", password="pw-builder-123")
    do_add_member(team, user, "builder")
    scripted(team, "writer", {"text": "done"})
    return user


@pytest.fixture
def browser(builder) -> Client:
    client = Client()
    client.force_login(builder)
    return client


def post_json(client: Client, url: str, body: Any):
    return client.post(url, json.dumps(body), content_type="application/json")


class TestBuilderDoors:
    def test_it_refuses_a_spec_nested_too_deep_at_validate_with_the_path(self, browser):
        response = post_json(browser, reverse("pipeline-validate"), {"spec": nested(MAX_NESTING)})
        assert response.status_code == 422
        assert response.json()["errors"][0]["path"] == "steps.0" + ".steps.0" * MAX_NESTING

    def test_it_refuses_10000_levels_of_yaml_text_at_validate(self, browser):
        text = "steps: " + "[" * 10_000 + "]" * 10_000
        response = post_json(browser, reverse("pipeline-validate"), {"text": text, "format": "yaml"})
        assert response.status_code == 422
        assert response.json()["errors"][0]["path"].startswith("steps.0.0")

    def test_it_refuses_10000_levels_of_json_text_at_validate(self, browser):
        text = '{"steps": ' + "[" * 10_000 + "]" * 10_000 + "}"
        response = post_json(browser, reverse("pipeline-validate"), {"text": text, "format": "json"})
        assert response.status_code == 422
        assert response.json()["errors"][0]["path"].startswith("steps.0.0")

    def test_it_refuses_a_yaml_alias_at_validate(self, browser):
        response = post_json(browser, reverse("pipeline-validate"), {"text": "a: &x [1]\nsteps: [*x]\n", "format": "yaml"})
        assert response.status_code == 422 and response.json()["errors"][0]["path"] == "steps.0"

    def test_it_refuses_a_request_body_10000_levels_deep(self, browser):
        body = '{"spec": {"steps": ' + "[" * 10_000 + "]" * 10_000 + "}}"
        response = browser.post(reverse("pipeline-validate"), body, content_type="application/json")
        assert response.status_code == 422
        assert response.json()["errors"][0]["path"].startswith("steps.0.0")

    def test_it_refuses_to_create_a_pipeline_nested_too_deep(self, browser):
        response = post_json(browser, reverse("pipeline-new"), {"name": "deep", "spec": nested(MAX_NESTING)})
        assert response.status_code == 400
        assert response.json()["errors"][0]["path"] == "steps.0" + ".steps.0" * MAX_NESTING

    def test_it_refuses_to_save_a_version_nested_too_deep(self, browser, team, builder):
        pipe = do_create_pipeline(team, "ok", nested(0), builder)
        response = post_json(browser, reverse("pipeline-builder", args=[pipe.pk]), {"spec": nested(MAX_NESTING + 1)})
        assert response.status_code == 400
        assert response.json()["errors"][0]["path"].startswith("steps.0.steps.0")
        assert pipe.versions.count() == 1

    def test_it_refuses_a_nul_in_a_pipeline_name_with_the_field(self, browser):
        response = post_json(browser, reverse("pipeline-new"), {"name": "a\x00b", "spec": nested(0)})
        assert response.status_code == 422
        assert response.json()["errors"] == [{"path": "name", "message": "contains a NUL character (\\u0000), which cannot be stored"}]

    def test_it_refuses_a_nul_in_a_form_field(self, browser, team):
        run = run_spec(team, {"steps": [{"kind": "review", "id": "gate", "instructions": "ok?"}]})
        item = run.review_items.get()
        response = browser.post(f"/review/{item.pk}/decide/", {"submit": "reject", "note": "no\x00pe"})
        assert response.status_code == 422
        assert "note" in response.content.decode()
        item.refresh_from_db()
        assert item.status == "pending"


@pytest.fixture(params=["steps", "raw"])
def deep_version(request, team, builder) -> PipelineVersion:
    """A version stored before the bounds existed: too many nested steps, or a value nested
    past the document bound (written straight to the database, as an old row would be)."""
    pipe = do_create_pipeline(team, "old", nested(0), builder)
    version = pipe.latest_version()
    spec = nested(MAX_NESTING + 20) if request.param == "steps" else {
        **nested(0), "inputs": {"x": {"default": deep_list(MAX_DOCUMENT_DEPTH + 200)}}}
    PipelineVersion.objects.filter(pk=version.pk).update(spec=spec)
    version.refresh_from_db()
    return version


class TestStoredDeepVersions:
    def test_its_version_page_renders(self, browser, deep_version):
        pipe = deep_version.pipeline
        response = browser.get(reverse("pipeline-version", args=[pipe.pk, deep_version.number]))
        assert response.status_code == 200
        assert "s0" in response.content.decode() or "default" in response.content.decode()

    def test_its_diff_renders(self, browser, deep_version, builder):
        pipe = deep_version.pipeline
        PipelineVersion.objects.create(pipeline=pipe, number=2, spec=nested(0), created_by=builder)
        response = browser.get(reverse("pipeline-diff", args=[pipe.pk]) + "?a=1&b=2")
        assert response.status_code == 200
        split = browser.get(reverse("pipeline-diff", args=[pipe.pk]) + "?a=1&b=2&view=split")
        assert split.status_code == 200

    def test_its_runs_pages_render(self, browser, deep_version):
        deep = deep_version.spec  # the run started while the version was still shallow enough
        PipelineVersion.objects.filter(pk=deep_version.pk).update(spec=nested(0))
        run = do_start_run(PipelineVersion.objects.get(pk=deep_version.pk), {}, submit=False)
        PipelineVersion.objects.filter(pk=deep_version.pk).update(spec=deep)
        assert browser.get(f"/runs/{run.pk}/").status_code == 200
        assert browser.get("/runs/").status_code == 200

    def test_the_builder_opens_it(self, browser, deep_version):
        response = browser.get(reverse("pipeline-builder", args=[deep_version.pipeline.pk]))
        assert response.status_code == 200


def test_a_run_of_a_spec_at_the_nesting_limit_renders(browser, team, builder):
    pipe = do_create_pipeline(team, "limit", nested(MAX_NESTING - 1), builder)
    run = do_start_run(pipe.latest_version(), {}, submit=False)
    response = browser.get(f"/runs/{run.pk}/")
    assert response.status_code == 200
    assert f"s{MAX_NESTING - 2}" in response.content.decode()
    version = browser.get(reverse("pipeline-version", args=[pipe.pk, 1]))
    assert version.status_code == 200


def test_deep_pretty_json_matches_json_dumps_for_ordinary_documents():
    from dashboard.views import pipelines

    document = {"a": [1, {"b": None, "c": []}, {}], "d": "é", "e": {"f": [True, 1.5]}}
    expected = json.dumps(document, indent=2, ensure_ascii=False)
    deep = {"wrap": deep_list(MAX_DOCUMENT_DEPTH + 5), **document}
    assert pipelines.pretty_json(deep) == json.dumps(deep, indent=2, ensure_ascii=False)
    assert pipelines.pretty_json(document) == expected


class TestReviewAssignment:
    @pytest.fixture
    def gated(self, team):
        return run_spec(team, {"steps": [{"kind": "review", "id": "gate", "instructions": "ok?"}]})

    @pytest.fixture
    def owner_browser(self, owner) -> Client:
        client = Client()
        client.force_login(owner)
        return client

    def test_it_says_not_a_member_for_another_teams_user_without_naming_them(self, gated, owner_browser, outsider):
        do_create_team("Elsewhere", outsider)
        item = gated.review_items.get()
        response = owner_browser.post(f"/review/{item.pk}/assign/", {"assignee": outsider.pk}, follow=True)
        page = response.content.decode()
        assert "not a member of this team" in page
        assert "outsider" not in page
        item.refresh_from_db()
        assert item.assigned_to is None

    def test_it_answers_the_same_for_a_user_that_does_not_exist(self, gated, owner_browser, outsider):
        item = gated.review_items.get()
        existing = owner_browser.post(f"/review/{item.pk}/assign/", {"assignee": outsider.pk}, follow=True)
        missing = owner_browser.post(f"/review/{item.pk}/assign/", {"assignee": outsider.pk + 1000}, follow=True)
        assert "not a member of this team" in existing.content.decode()
        assert "not a member of this team" in missing.content.decode()

    def test_it_lists_only_team_members_as_assignees(self, gated, owner_browser, outsider):
        do_create_team("Elsewhere", outsider)
        item = gated.review_items.get()
        page = owner_browser.get(f"/review/{item.pk}/").content.decode()
        assert ">owner<" in page
        assert "outsider" not in page

    def test_the_action_refuses_a_non_member_without_naming_them(self, gated, owner, outsider):
        from orchestrator.actions.errors import ActionError
        from orchestrator.actions.reviews import do_assign_review

        with pytest.raises(ActionError) as info:
            do_assign_review(gated.review_items.get(), outsider, owner)
        assert info.value.message == "not a member of this team" and info.value.field == "assignee"


def test_the_builder_refuses_a_deep_body_sent_as_plain_text(browser):
    body = '{"spec": ' + "[" * 10_000 + "]" * 10_000 + "}"
    response = browser.post(reverse("pipeline-validate"), body, content_type="text/plain")
    assert response.status_code == 422

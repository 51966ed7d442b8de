"""The pipelines pages: list, builder saves and permissions, live validation, history and diffs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from orchestrator.actions import (
    do_add_member,
    do_create_pipeline,
    do_create_team,
    do_save_pipeline_version,
    do_start_run,
)
from orchestrator.models import Pipeline, PipelineVersion
from tests.conftest import scripted

pytestmark = pytest.mark.django_db


def spec(prompt: str = "Write about {{ input.topic }}") -> dict[str, Any]:
    return {
        "inputs": {"topic": {"type": "string"}},
        "steps": [{"kind": "agent", "id": "write", "agent": "writer", "prompt": prompt}],
        "outputs": {"text": "steps.write.output"},
    }


@pytest.fixture
def builder(team):
    user = get_user_model().objects.create_user("builder", password="pw-builder-123")
    do_add_member(team, user, "builder")
    return user


@pytest.fixture
def pipe(team, owner):
    scripted(team, "writer", {"text": "done"})
    return do_create_pipeline(team, "Writer", spec(), owner)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def post_json(client: Client, url: str, body: Any):
    return client.post(url, json.dumps(body), content_type="application/json")


class TestList:
    def test_it_lists_the_teams_pipelines_with_latest_version_and_runs(self, pipe, owner):
        do_save_pipeline_version(pipe, spec("Again: {{ input.topic }}"), owner, note="second")
        do_start_run(pipe.latest_version(), {"topic": "x"}, submit=False)

        response = client_for(owner).get(reverse("pipelines"))

        assert response.status_code == 200
        row = response.context["pipelines"][0]
        assert (row.name, row.latest_number, row.runs_count) == ("Writer", 2, 1)
        assert b'id="new-pipeline"' in response.content

    def test_it_offers_new_pipeline_to_builders_only(self, pipe, teammate):
        response = client_for(teammate).get(reverse("pipelines"))

        assert b"Writer" in response.content
        assert b'id="new-pipeline"' not in response.content

    def test_it_lists_no_other_teams_pipelines(self, pipe, outsider):
        do_create_team("Other", outsider)

        response = client_for(outsider).get(reverse("pipelines"))

        assert list(response.context["pipelines"]) == []


class TestBuilderPermissions:
    def test_it_shows_viewers_the_builder_without_a_save_button(self, pipe, teammate):
        response = client_for(teammate).get(reverse("pipeline-builder", args=[pipe.pk]))

        assert response.status_code == 200
        assert b'id="save-version"' not in response.content
        assert b'id="read-only-notice"' in response.content
        assert response.context["config"]["canEdit"] is False

    def test_it_refuses_saves_from_viewers(self, pipe, teammate):
        response = post_json(client_for(teammate), reverse("pipeline-builder", args=[pipe.pk]),
                             {"spec": spec("Changed {{ input.topic }}"), "note": "sneaky"})

        assert response.status_code == 403
        assert list(pipe.versions.values_list("number", flat=True)) == [1]

    def test_it_refuses_viewers_the_new_pipeline_page_and_create(self, pipe, teammate):
        client = client_for(teammate)

        assert client.get(reverse("pipeline-new")).status_code == 403
        assert post_json(client, reverse("pipeline-new"), {"name": "Mine", "spec": spec()}).status_code == 403
        assert Pipeline.objects.count() == 1

    def test_it_shows_builders_the_save_button(self, pipe, builder):
        response = client_for(builder).get(reverse("pipeline-builder", args=[pipe.pk]))

        assert b'id="save-version"' in response.content
        assert response.context["config"]["canEdit"] is True
        assert [a["name"] for a in response.context["config"]["agents"]] == ["writer"]


    def test_it_embeds_the_spec_in_the_page_as_inert_json(self, pipe, owner):
        do_save_pipeline_version(pipe, spec("</script><script>alert(1)</script> {{ input.topic }}"), owner)

        response = client_for(owner).get(reverse("pipeline-builder", args=[pipe.pk]))

        assert b"<script>alert(1)" not in response.content
        assert b'<script id="builder-spec" type="application/json">' in response.content


class TestSaving:
    def test_it_creates_a_pipeline_at_version_one(self, team, builder):
        scripted(team, "writer", {"text": "done"})

        response = post_json(client_for(builder), reverse("pipeline-new"),
                             {"name": "Blog writer", "spec": spec(), "note": "ignored on create"})

        assert response.status_code == 200, response.content
        pipeline = Pipeline.objects.get(team=team, slug="blog-writer")
        assert response.json() == {"ok": True, "version": 1, "url": reverse("pipeline-builder", args=[pipeline.pk])}
        version = pipeline.latest_version()
        assert (version.number, version.created_by, version.spec["steps"][0]["id"]) == (1, builder, "write")

    def test_it_saves_new_versions_and_leaves_old_ones_unchanged(self, pipe, builder):
        client = client_for(builder)
        url = reverse("pipeline-builder", args=[pipe.pk])
        original = pipe.latest_version().spec

        first = post_json(client, url, {"spec": spec("Two {{ input.topic }}"), "note": "shorter"})
        second = post_json(client, url, {"spec": spec("Three {{ input.topic }}"), "note": "again"})

        assert (first.json()["version"], second.json()["version"]) == (2, 3)
        versions = {v.number: v for v in pipe.versions.all()}
        assert versions[1].spec == original
        assert versions[2].spec["steps"][0]["prompt"] == "Two {{ input.topic }}"
        assert (versions[3].note, versions[3].created_by) == ("again", builder)

    def test_it_refuses_an_invalid_spec_with_errors_and_saves_nothing(self, pipe, builder):
        bad = spec()
        bad["steps"][0]["prompt"] = ""
        bad["steps"][0]["agent"] = "ghost"

        response = post_json(client_for(builder), reverse("pipeline-builder", args=[pipe.pk]), {"spec": bad, "note": "x"})

        assert response.status_code == 400
        assert {"path": "steps.0.prompt", "message": "String should have at least 1 character"} in response.json()["errors"]
        assert PipelineVersion.objects.filter(pipeline=pipe).count() == 1

    def test_it_refuses_to_create_without_a_name_or_with_a_taken_one(self, pipe, builder):
        client = client_for(builder)

        nameless = post_json(client, reverse("pipeline-new"), {"name": "  ", "spec": spec()})
        slugless = post_json(client, reverse("pipeline-new"), {"name": "!!!", "spec": spec()})
        taken = post_json(client, reverse("pipeline-new"), {"name": "Writer", "spec": spec()})

        assert nameless.status_code == 400 and "name" in nameless.json()["form_errors"]
        assert slugless.status_code == 400 and "letters or digits" in slugless.json()["form_errors"]["name"]
        assert taken.status_code == 400 and "exists already" in taken.json()["form_errors"]["name"]
        assert Pipeline.objects.count() == 1

    def test_it_refuses_to_create_an_invalid_spec(self, team, builder):
        response = post_json(client_for(builder), reverse("pipeline-new"), {"name": "Empty", "spec": {"steps": []}})

        assert response.status_code == 400
        assert response.json()["errors"][0]["path"] == "steps"
        assert not Pipeline.objects.exists()

    def test_it_opens_an_older_version_in_the_builder(self, pipe, owner):
        do_save_pipeline_version(pipe, spec("Newer {{ input.topic }}"), owner)

        response = client_for(owner).get(reverse("pipeline-builder", args=[pipe.pk]) + "?version=1")

        assert response.context["spec"]["steps"][0]["prompt"] == "Write about {{ input.topic }}"
        assert response.context["is_old_version"] is True

    def test_it_starts_a_new_pipeline_from_a_copy(self, pipe, owner):
        response = client_for(owner).get(reverse("pipeline-new") + f"?from={pipe.pk}")

        assert response.context["spec"] == pipe.latest_version().spec
        assert response.context["config"]["isNew"] is True


class TestValidation:
    def test_it_returns_path_carrying_errors_for_a_bad_spec(self, pipe, owner):
        bad = {"steps": [{"kind": "parallel", "id": "fan", "branches": [{"kind": "agent", "id": "a", "agent": "", "prompt": "x"}],
                          "join": {"kind": "agent", "id": "j", "agent": "writer", "prompt": ""}}]}

        data = post_json(client_for(owner), reverse("pipeline-validate"), {"spec": bad}).json()

        assert data["valid"] is False
        assert {e["path"] for e in data["errors"]} == {"steps.0.branches.0.agent", "steps.0.join.prompt"}

    def test_it_names_unknown_agents_and_steps(self, pipe, owner):
        bad = spec("{{ steps.nowhere.output }}")
        bad["steps"][0]["agent"] = "ghost"

        data = post_json(client_for(owner), reverse("pipeline-validate"), {"spec": bad}).json()

        messages = {e["path"]: e["message"] for e in data["errors"]}
        assert "unknown agent 'ghost'" in messages["steps.0.agent"]
        assert "unknown step 'nowhere'" in messages["steps.0.prompt"]

    def test_it_returns_no_errors_and_the_yaml_for_a_good_spec(self, pipe, owner):
        data = post_json(client_for(owner), reverse("pipeline-validate"), {"spec": spec()}).json()

        assert (data["valid"], data["errors"]) == (True, [])
        assert "- kind: agent" in data["yaml"]

    def test_it_reads_yaml_text_into_a_document(self, pipe, owner):
        text = "inputs: {topic: {type: string}}\nsteps:\n  - {kind: agent, id: w, agent: writer, prompt: 'On {{ input.topic }}'}\n"

        data = post_json(client_for(owner), reverse("pipeline-validate"), {"text": text, "format": "yaml"}).json()

        assert data["valid"] is True
        assert data["document"]["steps"][0]["prompt"] == "On {{ input.topic }}"

    def test_it_reports_yaml_that_does_not_parse(self, pipe, owner):
        data = post_json(client_for(owner), reverse("pipeline-validate"), {"text": "steps: [", "format": "yaml"}).json()

        assert data["parse_error"] is True
        assert data["errors"][0]["message"].startswith("YAML does not parse")

    def test_it_checks_agents_against_the_callers_team_only(self, pipe, outsider):
        do_create_team("Other", outsider)

        data = post_json(client_for(outsider), reverse("pipeline-validate"), {"spec": spec()}).json()

        assert [e["path"] for e in data["errors"]] == ["steps.0.agent"]


class TestIsolation:
    @pytest.mark.parametrize("name", ["pipeline-builder", "pipeline-versions", "pipeline-diff"])
    def test_it_hides_another_teams_pipeline(self, pipe, outsider, name):
        do_create_team("Other", outsider)

        assert client_for(outsider).get(reverse(name, args=[pipe.pk])).status_code == 404

    def test_it_hides_another_teams_versions_and_refuses_saves(self, pipe, outsider):
        do_create_team("Other", outsider)
        client = client_for(outsider)

        assert client.get(reverse("pipeline-version", args=[pipe.pk, 1])).status_code == 404
        assert client.get(reverse("pipeline-new") + f"?from={pipe.pk}").status_code == 404
        assert post_json(client, reverse("pipeline-builder", args=[pipe.pk]), {"spec": spec()}).status_code == 404
        assert pipe.versions.count() == 1


class TestHistory:
    def test_it_lists_versions_with_note_author_and_run_links(self, pipe, owner):
        do_save_pipeline_version(pipe, spec("B {{ input.topic }}"), owner, note="tighter prompt")

        response = client_for(owner).get(reverse("pipeline-versions", args=[pipe.pk]))

        assert [v.number for v in response.context["versions"]] == [2, 1]
        assert b"tighter prompt" in response.content
        assert f'href="/runs/new/?pipeline={pipe.pk}&amp;version=1"'.encode() in response.content

    def test_it_shows_one_version_as_json_and_yaml(self, pipe, owner):
        response = client_for(owner).get(reverse("pipeline-version", args=[pipe.pk, 1]))

        assert response.status_code == 200
        assert b"&quot;kind&quot;: &quot;agent&quot;" in response.content
        assert b"- id: write" in response.content
        assert f'href="/runs/new/?pipeline={pipe.pk}&amp;version=1"'.encode() in response.content

    def test_it_diffs_two_versions_showing_the_changed_line(self, pipe, owner):
        do_save_pipeline_version(pipe, spec("Rewritten {{ input.topic }}"), owner)

        response = client_for(owner).get(reverse("pipeline-diff", args=[pipe.pk]) + "?a=1&b=2")

        lines = response.context["lines"]
        assert {"kind": "del", "text": '-      "prompt": "Write about {{ input.topic }}"'} in lines
        assert {"kind": "add", "text": '+      "prompt": "Rewritten {{ input.topic }}"'} in lines
        assert b'<span class="add">+      &quot;prompt&quot;: &quot;Rewritten {{ input.topic }}&quot;</span>' in response.content

    def test_it_diffs_side_by_side(self, pipe, owner):
        do_save_pipeline_version(pipe, spec("Rewritten {{ input.topic }}"), owner)

        response = client_for(owner).get(reverse("pipeline-diff", args=[pipe.pk]) + "?a=1&b=2&view=split")

        changed = [r for r in response.context["rows"] if r["kind"] == "replace"]
        assert [(r["left"].strip(), r["right"].strip()) for r in changed] == [
            ('"prompt": "Write about {{ input.topic }}"', '"prompt": "Rewritten {{ input.topic }}"')]

    def test_it_escapes_spec_text_in_diffs(self, pipe, owner):
        do_save_pipeline_version(pipe, spec("<script>alert(1)</script> {{ input.topic }}"), owner)

        response = client_for(owner).get(reverse("pipeline-diff", args=[pipe.pk]))

        assert b"<script>alert(1)</script>" not in response.content
        assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in response.content

    def test_it_defaults_to_the_two_latest_versions(self, pipe, owner):
        do_save_pipeline_version(pipe, spec("B {{ input.topic }}"), owner)
        do_save_pipeline_version(pipe, spec("C {{ input.topic }}"), owner)

        response = client_for(owner).get(reverse("pipeline-diff", args=[pipe.pk]))

        assert (response.context["a"].number, response.context["b"].number) == (2, 3)

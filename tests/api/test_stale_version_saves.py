"""Two builders edit the same version: the second save says a newer version exists and saves
nothing, where both used to get a new version and the later one silently dropped the earlier
one's edit (found by a review). The builder and the API send the version the edit started from
(`base_version`); without it the last save still wins, as before."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from orchestrator.models import PipelineVersion
from tests.conftest import pipeline

pytestmark = pytest.mark.django_db(transaction=True)
SPEC = {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "x"}]}


def _spec(prompt: str) -> dict:
    return {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": prompt}]}


def test_the_api_refuses_a_save_from_a_stale_version(api, keys):
    pipe = pipeline(keys["team"], SPEC)
    status, body = api.call("post", f"/pipelines/{pipe.pk}/versions", keys["builder"], {"spec": _spec("alice"), "base_version": 1})
    assert status == 201 and body["number"] == 2, body
    status, body = api.call("post", f"/pipelines/{pipe.pk}/versions", keys["owner"], {"spec": _spec("bob"), "base_version": 1})
    assert status == 409 and "version 2 was saved (by builder)" in str(body) and "base_version" in str(body), (status, body)
    assert list(PipelineVersion.objects.filter(pipeline=pipe).values_list("number", flat=True).order_by("number")) == [1, 2]
    status, body = api.call("post", f"/pipelines/{pipe.pk}/versions", keys["owner"], {"spec": _spec("bob"), "base_version": 2})
    assert status == 201 and body["number"] == 3
    status, body = api.call("post", f"/pipelines/{pipe.pk}/versions", keys["owner"], {"spec": _spec("last wins")})
    assert status == 201 and body["number"] == 4  # no base_version: as before


def test_the_builder_refuses_a_save_from_a_stale_page(keys):
    pipe = pipeline(keys["team"], SPEC)
    alice, bob = Client(), Client()
    alice.force_login(keys["users"]["builder"])
    bob.force_login(keys["users"]["owner"])
    url = reverse("pipeline-builder", args=[pipe.pk])
    first = alice.post(url, json.dumps({"spec": _spec("alice"), "note": "", "base_version": 1}), content_type="application/json")
    assert first.status_code == 200 and first.json()["version"] == 2
    second = bob.post(url, json.dumps({"spec": _spec("bob"), "note": "", "base_version": 1}), content_type="application/json")
    assert second.status_code == 409 and "version 2 was saved" in second.json()["form_errors"][""], second.content
    assert PipelineVersion.objects.filter(pipeline=pipe).count() == 2
    assert PipelineVersion.objects.get(pipeline=pipe, number=2).spec["steps"][0]["prompt"] == "alice"

"""Creating a pipeline keeps the version note typed in the builder (it used to be replaced
by "created")."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from orchestrator.actions import do_add_member
from orchestrator.models import Pipeline
from tests.conftest import scripted

pytestmark = pytest.mark.django_db

SPEC = {"steps": [{"kind": "agent", "id": "write", "agent": "writer", "prompt": "Hello"}]}


@pytest.fixture
def client(team) -> Client:
    user = get_user_model().objects.create_user("builder", password="pw-builder-123")
    do_add_member(team, user, "builder")
    scripted(team, "writer", {"text": "done"})
    client = Client()
    client.force_login(user)
    return client


def create(client: Client, **body) -> object:
    return client.post(reverse("pipeline-new"), json.dumps({"name": "Noted", "spec": SPEC, **body}),
                       content_type="application/json")


def test_it_keeps_the_note_of_the_first_version(client, team):
    assert create(client, note="  first cut  ").status_code == 200
    version = Pipeline.objects.get(team=team, name="Noted").latest_version()
    assert (version.number, version.note) == (1, "first cut")


def test_it_notes_a_first_version_without_a_note_as_created(client, team):
    assert create(client).status_code == 200
    assert Pipeline.objects.get(team=team, name="Noted").latest_version().note == "created"


def test_it_refuses_a_note_too_long_and_creates_nothing(client, team):
    response = create(client, note="x" * 201)
    assert response.status_code == 400
    assert "note" in response.json()["form_errors"]
    assert not Pipeline.objects.filter(team=team, name="Noted").exists()

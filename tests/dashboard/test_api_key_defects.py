"""API keys: creating one redirects (a reload never makes a second key) and revoking asks first."""

from __future__ import annotations

import pytest
from django.contrib.sessions.models import Session
from django.test import Client

from mcpgateway.actions.access import do_create_api_key
from mcpgateway.models import ApiKey

pytestmark = pytest.mark.django_db


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_it_redirects_after_creating_a_key_so_a_reload_creates_no_second_one(team, owner):
    client = login(owner)

    created = client.post("/tools/access/keys/", {"name": "deploy bot", "scopes": ["read"]})

    assert created.status_code == 302 and created["Location"] == "/tools/access/keys/created/"
    assert ApiKey.objects.count() == 1
    shown = client.get(created["Location"])
    token = shown.content.decode().split('id="new-token">')[1].split("<")[0]
    assert ApiKey.hash_token(token) == ApiKey.objects.get().hashed
    assert shown["Cache-Control"] == "no-store"
    reloaded = client.get(created["Location"])  # what a browser reload of the shown page does
    assert reloaded.status_code == 302 and token not in client.get("/tools/access/").content.decode()
    assert ApiKey.objects.count() == 1


def test_it_never_stores_the_new_token_in_plain_text_in_the_session(team, owner):
    client = login(owner)

    created = client.post("/tools/access/keys/", {"name": "deploy bot", "scopes": ["read"]})

    row = Session.objects.get(session_key=client.session.session_key)
    assert created.status_code == 302 and len(Session.objects.all()) == 1
    shown = client.get(created["Location"])
    token = shown.content.decode().split('id="new-token">')[1].split("<")[0]
    assert ApiKey.hash_token(token) == ApiKey.objects.get().hashed
    assert token not in row.session_data and token not in str(row.get_decoded())
    secret_part = token.split("_")[-1][-20:]
    assert secret_part not in str(row.get_decoded())
    assert token not in str(Session.objects.get(session_key=row.session_key).get_decoded())  # gone after display


def test_it_drops_a_new_token_not_shown_within_its_time(team, owner):
    client = login(owner)
    created = client.post("/tools/access/keys/", {"name": "deploy bot", "scopes": ["read"]})
    session = client.session
    session["new_api_key"] = {**session["new_api_key"], "expires": 0}  # as if a minute had passed
    session.save()

    late = client.get(created["Location"])

    assert late.status_code == 302 and late["Location"] == "/tools/access/"
    assert "new_api_key" not in client.session and ApiKey.objects.count() == 1


def test_it_asks_before_revoking_a_key(team, owner):
    key = do_create_api_key(team.pk, "ci", owner)[0]
    client = login(owner)

    asked = client.post(f"/tools/access/keys/{key.pk}/revoke/")
    key.refresh_from_db()
    assert asked.status_code == 200 and key.revoked_at is None
    assert 'name="confirm" value="yes"' in asked.content.decode() and "Revoke the API key" in asked.content.decode()
    assert client.get(f"/tools/access/keys/{key.pk}/revoke/").status_code == 200

    done = client.post(f"/tools/access/keys/{key.pk}/revoke/", {"confirm": "yes", "reason": "leaked in a log"})
    key.refresh_from_db()
    assert done.status_code == 302 and key.revoked_at is not None
    assert "leaked in a log" in client.get("/tools/access/").content.decode()


def test_it_lets_no_viewer_reach_the_confirmation(team, owner, teammate):
    key = do_create_api_key(team.pk, "ci", owner)[0]
    assert login(teammate).get(f"/tools/access/keys/{key.pk}/revoke/").status_code == 403

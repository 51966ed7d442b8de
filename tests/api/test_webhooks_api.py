"""Webhooks through the REST API: a pipeline's webhooks can be changed, switched off, deleted
and their secret rotated (the API could only create and list them: a leaked secret could not
be replaced, and a receiver that went away could not be switched off, short of the admin)."""

from __future__ import annotations

import pytest

from orchestrator.models import Webhook, WebhookDelivery
from orchestrator.webhooks import deliver_due, enqueue, verify_signature
from tests.conftest import pipeline

pytestmark = pytest.mark.django_db(transaction=True)
SPEC = {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "x"}]}
URL = "https://hooks.example.com/agentdeck"


@pytest.fixture
def hook(api, keys):
    pipe = pipeline(keys["team"], SPEC)
    status, body = api.call("post", f"/pipelines/{pipe.pk}/webhooks", keys["builder"], {"url": URL, "events": ["run.failed"]})
    assert status == 201 and body["secret"].startswith("whsec_"), body
    return pipe, body


def test_a_webhook_is_switched_off_and_on_and_its_deliveries_wait_meanwhile(api, keys, hook):
    pipe, made = hook
    path = f"/pipelines/{pipe.pk}/webhooks/{made['id']}"
    status, body = api.call("patch", path, keys["builder"], {"enabled": False})
    assert status == 200 and body["enabled"] is False and body["secret"] is None, body
    enqueue(pipe.pk, "run.failed", {"run": 1})  # an enabled webhook only: nothing queued
    assert WebhookDelivery.objects.count() == 0
    status, body = api.call("patch", path, keys["builder"], {"enabled": True, "events": ["run.failed", "run.succeeded"]})
    assert status == 200 and body["enabled"] and body["events"] == ["run.failed", "run.succeeded"], body
    assert enqueue(pipe.pk, "run.succeeded", {"run": 1}) == 1
    listed = api.call("get", f"/pipelines/{pipe.pk}/webhooks", keys["builder"], None)[1]
    assert [(h["id"], h["url"], h["enabled"], h["secret"]) for h in listed] == [(made["id"], URL, True, None)]


@pytest.mark.parametrize("change, field", [
    ({"events": []}, "events"),
    ({"events": ["run.exploded"]}, "events"),
    ({"url": "ftp://hooks.example.com/x"}, "url"),
    ({"url": "http://169.254.169.254/latest/meta-data"}, "url"),
    ({"url": None}, "url"),
    ({"enabled": None}, "enabled"),
])
def test_a_bad_change_is_refused_naming_its_field_and_changes_nothing(api, keys, hook, change, field):
    pipe, made = hook
    status, body = api.call("patch", f"/pipelines/{pipe.pk}/webhooks/{made['id']}", keys["builder"], change)
    assert status in (400, 422) and field in str(body), (status, body)
    kept = Webhook.objects.get(pk=made["id"])
    assert (kept.url, kept.events, kept.enabled) == (URL, ["run.failed"], True)


def test_deleting_a_webhook_takes_its_waiting_deliveries_with_it(api, keys, hook):
    pipe, made = hook
    enqueue(pipe.pk, "run.failed", {"run": 1})
    status, _ = api.call("delete", f"/pipelines/{pipe.pk}/webhooks/{made['id']}", keys["builder"], None)
    assert status == 204
    assert not Webhook.objects.filter(pk=made["id"]).exists() and WebhookDelivery.objects.count() == 0
    assert deliver_due() == 0
    assert api.call("delete", f"/pipelines/{pipe.pk}/webhooks/{made['id']}", keys["builder"], None)[0] == 404


def test_rotating_gives_a_new_secret_once_and_says_until_when_the_old_one_signs(api, keys, hook):
    import time

    from orchestrator.webhooks import sign

    pipe, made = hook
    path = f"/pipelines/{pipe.pk}/webhooks/{made['id']}/rotate-secret"
    status, body = api.call("post", f"{path}?keep_previous_for_s=3600", keys["builder"], None)
    assert status == 200 and body["secret"].startswith("whsec_") and body["secret"] != made["secret"], body
    assert body["previous_secret_until"] is not None
    webhook = Webhook.objects.get(pk=made["id"])
    header = sign(webhook.signing_secrets(), b"{}")
    assert verify_signature(body["secret"], b"{}", header) and verify_signature(made["secret"], b"{}", header)
    listed = api.call("get", f"/pipelines/{pipe.pk}/webhooks", keys["builder"], None)[1]
    assert listed[0]["secret"] is None and listed[0]["previous_secret_until"] == body["previous_secret_until"]

    status, again = api.call("post", f"{path}?keep_previous_for_s=0", keys["builder"], None)
    assert status == 200 and again["previous_secret_until"] is None, again
    header = sign(Webhook.objects.get(pk=made["id"]).signing_secrets(), b"{}", int(time.time()))
    assert verify_signature(again["secret"], b"{}", header)
    assert not verify_signature(body["secret"], b"{}", header) and not verify_signature(made["secret"], b"{}", header)

    for bad in ("-1", str(8 * 86400), "soon"):
        assert api.call("post", f"{path}?keep_previous_for_s={bad}", keys["builder"], None)[0] == 422


def test_another_teams_webhook_is_not_found_and_a_viewer_cannot_change_one(api, keys, hook):
    pipe, made = hook
    path = f"/pipelines/{pipe.pk}/webhooks/{made['id']}"
    assert api.call("patch", path, keys["other"], {"enabled": False})[0] == 404
    assert api.call("post", f"{path}/rotate-secret", keys["other"], None)[0] == 404
    assert api.call("patch", path, keys["viewer"], {"enabled": False})[0] == 403
    other_pipe = pipeline(keys["team"], SPEC, name="another")
    assert api.call("delete", f"/pipelines/{other_pipe.pk}/webhooks/{made['id']}", keys["builder"], None)[0] == 404
    assert Webhook.objects.get(pk=made["id"]).enabled

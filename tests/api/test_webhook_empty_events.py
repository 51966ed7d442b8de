# Found by an outside review (2026-12-07, input boundaries); failed before its fix.
"""Webhooks: `events: []` on creation subscribes to every event.

What is wrong (severity: low): `orchestrator/webhooks.py:do_create_webhook` does
`events = _check_events(events or list(Webhook.EVENTS))`, so an explicit empty list — a client
asking for no event yet, or a UI whose checkboxes were all cleared — is silently turned into
all four events (run.succeeded, run.failed, run.cancelled, review.needed), and the receiver
gets deliveries (with run outputs) it never asked for. The same value is refused on update
(`do_update_webhook`: "a webhook needs at least one event"), so the two doors disagree.

Correct behaviour: the default applies only when `events` is absent; `events: []` is a 422
naming `events`, as on PATCH.
"""

from __future__ import annotations

import pytest

from orchestrator.actions import do_create_pipeline
from orchestrator.models import Webhook
from tests.api.conftest import api, keys  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db


def test_an_empty_event_list_is_refused_not_widened_to_every_event(api, keys):  # noqa: F811
    pipe = do_create_pipeline(keys["team"], "hooked", {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "x"}]})

    status, body = api.call("post", f"/pipelines/{pipe.pk}/webhooks", keys["owner"],
                            {"url": "https://hooks.example.com/agentdeck", "events": []})

    stored = list(Webhook.objects.filter(pipeline=pipe).values_list("events", flat=True))
    assert status in (400, 422) and not stored, (
        f"`events: []` answered {status} and the webhook was stored subscribed to {stored}")
    assert body["error"]["field"] == "events", body
    status, body = api.call("post", f"/pipelines/{pipe.pk}/webhooks", keys["owner"],
                            {"url": "https://hooks.example.com/agentdeck"})  # no events: all of them
    assert status == 201 and len(body["events"]) == 4, body

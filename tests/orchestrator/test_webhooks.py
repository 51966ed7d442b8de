"""Webhooks: run completion and review-needed events POSTed, signed, retried with backoff."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from orchestrator.models import WebhookDelivery
from orchestrator.webhooks import MAX_ATTEMPTS, deliver_due, do_create_webhook, verify_signature
from tests.conftest import execute, pipeline, scripted, start

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("outbound_allows_loopback")]


class Receiver:
    """A loopback endpoint that answers with the queued statuses and records what it got."""

    def __init__(self, statuses: list[int]):
        self.statuses = list(statuses)
        self.received: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append((dict(self.headers), body))
                self.send_response(outer.statuses.pop(0) if outer.statuses else 200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver([])
    yield r
    r.close()


def test_it_posts_a_signed_completion_event(team, receiver):
    scripted(team, "w", {"text": "done"})
    pipe = pipeline(team, {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "go"}]})
    _, secret = do_create_webhook(pipe, receiver.url)

    run = execute(start(pipe))
    assert deliver_due() == 1

    (headers, body), = receiver.received
    assert headers["X-Agentdeck-Event"] == "run.succeeded"
    assert verify_signature(secret, body, headers["X-Agentdeck-Signature"])
    assert not verify_signature(secret, body + b" ", headers["X-Agentdeck-Signature"])
    assert not verify_signature("whsec_other", body, headers["X-Agentdeck-Signature"])
    payload = json.loads(body)
    assert payload["run_id"] == run.pk and payload["output"] == {"result": "done"}
    assert WebhookDelivery.objects.get().status == "delivered"


def test_it_announces_a_review_that_is_needed(team, receiver):
    pipe = pipeline(team, {"steps": [{"kind": "review", "id": "g", "instructions": "ok?"}]})
    do_create_webhook(pipe, receiver.url, events=["review.needed"])

    execute(start(pipe))
    deliver_due()

    (headers, body), = receiver.received
    assert headers["X-Agentdeck-Event"] == "review.needed"
    assert json.loads(body)["reason"] == "gate"


def test_it_retries_with_backoff_until_delivered(team):
    receiver = Receiver([500, 503])
    try:
        scripted(team, "w", {"text": "done"})
        pipe = pipeline(team, {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "go"}]})
        do_create_webhook(pipe, receiver.url)
        execute(start(pipe))

        deliver_due()
        first = WebhookDelivery.objects.get()
        assert (first.status, first.attempts, first.response_status) == ("pending", 1, 500)
        assert deliver_due() == 0  # not due yet: backoff
        WebhookDelivery.objects.update(next_attempt_at=timezone.now())
        deliver_due()
        second = WebhookDelivery.objects.get()
        assert second.attempts == 2 and (second.next_attempt_at - timezone.now()).total_seconds() > 2
        WebhookDelivery.objects.update(next_attempt_at=timezone.now())
        deliver_due()
        assert WebhookDelivery.objects.get().status == "delivered"
        assert len(receiver.received) == 3
    finally:
        receiver.close()


def test_it_gives_up_after_the_last_attempt(team):
    receiver = Receiver([500] * MAX_ATTEMPTS)
    try:
        pipe = pipeline(team, {"steps": [{"kind": "review", "id": "g", "instructions": "ok?"}]})
        do_create_webhook(pipe, receiver.url, events=["review.needed"])
        execute(start(pipe))
        for _ in range(MAX_ATTEMPTS):
            WebhookDelivery.objects.update(next_attempt_at=timezone.now())
            deliver_due()
        assert WebhookDelivery.objects.get().status == "failed"
    finally:
        receiver.close()

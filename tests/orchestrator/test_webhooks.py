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


# -- found by a review ----------------------------------------------------------------------


class Trickler:
    """A receiver that answers one byte every 0.4 s: each read is within any read timeout."""

    def __init__(self) -> None:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.hits = 0
        self.stopped = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.hits += 1
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn) -> None:
        import time

        conn.recv(65536)
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100000
        try:
            for byte in answer:
                if self.stopped.is_set():
                    return
                conn.sendall(bytes([byte]))
                time.sleep(0.4)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stopped.set()
        self.sock.close()


def test_a_receiver_that_trickles_its_answer_holds_no_sender_past_the_deadline(team, receiver, settings):
    """The client's timeout bounds each read alone: a receiver answering a byte at a time held
    its sender for ever, then (its lease run out) the next sender too, and every other
    team's deliveries waited. One deadline now bounds the whole exchange."""
    import time

    settings.WEBHOOK_TIMEOUT_S = 1
    tarpit = Trickler()
    try:
        slow = pipeline(team, {"steps": [{"kind": "review", "id": "g", "instructions": "ok?"}]}, name="slow")
        fine = pipeline(team, {"steps": [{"kind": "review", "id": "g", "instructions": "ok?"}]}, name="fine")
        do_create_webhook(slow, tarpit.url, events=["review.needed"])
        do_create_webhook(fine, receiver.url, events=["review.needed"])
        execute(start(slow))
        execute(start(fine))
        started = time.monotonic()
        assert deliver_due() == 2
        took = time.monotonic() - started
    finally:
        tarpit.close()
    assert took < 6, f"one pass took {took:.1f}s"  # the 2 s deadline, not the receiver's pace
    stuck = WebhookDelivery.objects.get(webhook__url=tarpit.url)
    assert (stuck.status, stuck.attempts) == ("pending", 1) and "no complete answer" in stuck.last_error
    assert WebhookDelivery.objects.get(webhook__url=receiver.url).status == "delivered"
    assert tarpit.hits == 1


def test_a_delivery_that_cannot_be_sent_at_all_is_a_failed_attempt_not_a_stuck_one(team, receiver):
    """`https://☃.com/` passes the URL check and then raises InvalidURL (not an HTTPError):
    the delivery stayed `sending`, was taken again at every lease, never failed, and each
    pass stopped there."""
    bad = pipeline(team, {"steps": [{"kind": "review", "id": "g", "instructions": "ok?"}]}, name="bad")
    good = pipeline(team, {"steps": [{"kind": "review", "id": "g", "instructions": "ok?"}]}, name="good")
    hook, _ = do_create_webhook(bad, receiver.url, events=["review.needed"])
    type(hook).objects.filter(pk=hook.pk).update(url="https://\u2603.com/hook")
    do_create_webhook(good, receiver.url, events=["review.needed"])
    execute(start(bad))
    execute(start(good))
    assert deliver_due() == 2
    broken = WebhookDelivery.objects.get(webhook=hook)
    assert (broken.status, broken.attempts) == ("pending", 1) and broken.last_error, broken.last_error
    assert len(receiver.received) == 1


def test_the_delivery_id_is_signed_so_a_replay_under_another_id_is_recognised(team, receiver):
    pipe = pipeline(team, {"steps": [{"kind": "review", "id": "g", "instructions": "ok?"}]})
    _, secret = do_create_webhook(pipe, receiver.url, events=["review.needed"])
    execute(start(pipe))
    deliver_due()
    (headers, body), = receiver.received
    assert json.loads(body)["delivery"] == headers["X-Agentdeck-Delivery"]  # covered by the signature
    assert verify_signature(secret, body, headers["X-Agentdeck-Signature"])
    assert not verify_signature(secret, body.replace(b'"delivery": "', b'"delivery": "9'), headers["X-Agentdeck-Signature"])


def test_a_malformed_signature_header_is_false_not_an_error():
    assert verify_signature("whsec_x", b"{}", f"t={int(timezone.now().timestamp())},v1=\u00e9") is False


def test_a_disabled_webhooks_deliveries_wait(team, receiver):
    pipe = pipeline(team, {"steps": [{"kind": "review", "id": "g", "instructions": "ok?"}]})
    hook, _ = do_create_webhook(pipe, receiver.url, events=["review.needed"])
    execute(start(pipe))
    type(hook).objects.filter(pk=hook.pk).update(enabled=False)
    assert deliver_due() == 0 and receiver.received == []
    type(hook).objects.filter(pk=hook.pk).update(enabled=True)
    assert deliver_due() == 1 and len(receiver.received) == 1


def _review_pipe(team):
    return pipeline(team, {"steps": [{"kind": "review", "id": "g", "instructions": "ok?"}]})


def test_after_a_rotation_both_secrets_sign_until_the_overlap_ends(team, receiver):
    """A receiver switching to the new secret refuses no delivery meanwhile: during the overlap
    each delivery carries a `v1=` for the new secret and one for the old; after it, only the new."""
    from datetime import timedelta

    from orchestrator.models import Webhook
    from orchestrator.webhooks import do_rotate_secret

    pipe = _review_pipe(team)
    hook, old = do_create_webhook(pipe, receiver.url, events=["review.needed"])
    new = do_rotate_secret(hook, timedelta(hours=1))
    assert new != old and new.startswith("whsec_")
    execute(start(pipe))
    assert deliver_due() == 1
    (headers, body), = receiver.received
    signature = headers["X-Agentdeck-Signature"]
    assert signature.count("v1=") == 2
    assert verify_signature(new, body, signature) and verify_signature(old, body, signature)
    assert not verify_signature("whsec_someone-else", body, signature)

    Webhook.objects.filter(pk=hook.pk).update(previous_secret_until=timezone.now() - timedelta(seconds=1))
    execute(start(pipe))
    assert deliver_due() == 1
    headers, body = receiver.received[1]
    assert headers["X-Agentdeck-Signature"].count("v1=") == 1
    assert verify_signature(new, body, headers["X-Agentdeck-Signature"])
    assert not verify_signature(old, body, headers["X-Agentdeck-Signature"])


def test_a_rotation_without_overlap_stops_the_old_secret_at_once_and_both_stay_redacted(team, receiver):
    from datetime import timedelta

    from mcpgateway.redaction import get_redactor, invalidate
    from orchestrator.webhooks import do_rotate_secret, webhook_secrets

    pipe = _review_pipe(team)
    hook, old = do_create_webhook(pipe, receiver.url, events=["review.needed"])
    new = do_rotate_secret(hook, timedelta(0))
    execute(start(pipe))
    deliver_due()
    (headers, body), = receiver.received
    assert verify_signature(new, body, headers["X-Agentdeck-Signature"])
    assert not verify_signature(old, body, headers["X-Agentdeck-Signature"])
    assert {old, new} <= {value for _, value in webhook_secrets()}
    invalidate()
    assert old not in get_redactor().redact(f"leaked {old} and {new}")
    assert new not in get_redactor().redact(f"leaked {old} and {new}")


@pytest.mark.parametrize("header", ["v1=abc", "t=1,t=2,v1=abc", "t=x,v1=abc", "t=1;v1=abc", ""])
def test_a_signature_header_without_exactly_one_timestamp_is_false(header):
    assert verify_signature("whsec_x", b"{}", header) is False

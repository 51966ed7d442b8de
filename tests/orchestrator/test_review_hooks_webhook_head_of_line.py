# Found by an outside review (2026-12-07, webhooks, streams and traces); failed before its fix.
"""One team's receiver that never answers holds every sender for its whole deadline per
delivery, one delivery after another: `deliver_due` sent its batch sequentially, so another
team's healthy receiver got its event only after every hanging delivery ahead of it had
timed out (twice WEBHOOK_TIMEOUT_S each: 20 s each by default, 50 in a batch)."""

from __future__ import annotations

import socket
import threading

import pytest
from django.db import connection

from orchestrator import webhooks
from orchestrator.actions import do_create_team
from orchestrator.models import WebhookDelivery
from orchestrator.webhooks import deliver_due, do_create_webhook
from tests.conftest import pipeline
from tests.orchestrator.test_webhooks import Receiver

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("outbound_allows_loopback")]
HANGING = 4
REVIEW = {"steps": [{"kind": "review", "id": "g", "instructions": "ok?"}]}


class BlackHole:
    """Accepts connections, reads the request, never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.conns: list[socket.socket] = []
        self.stopped = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        self.stopped.set()
        self.sock.close()
        for conn in self.conns:
            conn.close()


def test_a_hanging_receiver_does_not_hold_back_another_teams_webhook(team, owner, settings):
    """Measured without a clock: when the healthy receiver gets its event, how many of the
    hanging deliveries already have an outcome (sent one after another: all of them, each
    after its whole deadline; sent together: none, they are still waiting)."""
    settings.WEBHOOK_TIMEOUT_S = 1
    hole, healthy = BlackHole(), Receiver([])
    finished_when_healthy_got_it: list[int] = []
    original = healthy.server.RequestHandlerClass.do_POST

    def noting(handler):
        try:
            finished_when_healthy_got_it.append(
                WebhookDelivery.objects.filter(webhook__url=hole.url, attempts__gt=0).count())
        finally:
            connection.close()  # (the receiver's own thread)
        original(handler)

    healthy.server.RequestHandlerClass.do_POST = noting
    try:
        slow = pipeline(team, REVIEW, name="slow")
        other_team = do_create_team("Other", owner)
        fine = pipeline(other_team, REVIEW, name="fine")
        do_create_webhook(slow, hole.url, events=["run.succeeded"])
        do_create_webhook(fine, healthy.url, events=["run.succeeded"])
        for n in range(HANGING):  # the slow team's events came first
            webhooks.enqueue(slow.pk, "run.succeeded", {"run_id": n})
        webhooks.enqueue(fine.pk, "run.succeeded", {"run_id": 999})
        assert deliver_due() == HANGING + 1
    finally:
        hole.close()
        healthy.close()
    assert WebhookDelivery.objects.get(webhook__url=healthy.url).status == "delivered"
    stuck = WebhookDelivery.objects.filter(webhook__url=hole.url)
    assert [(d.status, d.attempts) for d in stuck] == [("pending", 1)] * HANGING
    assert finished_when_healthy_got_it == [0], (
        f"the other team's receiver got its event only after {finished_when_healthy_got_it} deliveries to "
        "the hanging receiver had each waited out the whole deadline, one after another")


def test_one_webhook_takes_a_few_of_a_pass_and_the_longest_due_go_first(team, owner):
    """A webhook with a backlog takes at most `PER_WEBHOOK_PER_PASS` of a pass (the rest go in
    the next ones); a pass takes the deliveries due longest first."""
    from datetime import timedelta

    from django.utils import timezone

    per_pass = webhooks.PER_WEBHOOK_PER_PASS
    busy_receiver, other_receiver = Receiver([]), Receiver([])
    try:
        busy = pipeline(team, REVIEW, name="busy")
        other = pipeline(do_create_team("Other", owner), REVIEW, name="other")
        do_create_webhook(busy, busy_receiver.url, events=["run.succeeded"])
        do_create_webhook(other, other_receiver.url, events=["run.succeeded"])
        backlog = per_pass + 3
        for n in range(backlog):
            webhooks.enqueue(busy.pk, "run.succeeded", {"run_id": n})
        webhooks.enqueue(other.pk, "run.succeeded", {"run_id": 999})
        oldest = WebhookDelivery.objects.get(webhook__url=other_receiver.url)
        WebhookDelivery.objects.filter(pk=oldest.pk).update(next_attempt_at=timezone.now() - timedelta(minutes=5))

        assert deliver_due(limit=1) == 1  # the longest due, though enqueued last
        assert WebhookDelivery.objects.get(pk=oldest.pk).status == "delivered" and len(busy_receiver.received) == 0
        assert deliver_due() == per_pass  # not the whole backlog in one pass
        assert deliver_due() == backlog - per_pass
    finally:
        busy_receiver.close()
        other_receiver.close()
    assert len(busy_receiver.received) == backlog
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"delivered"}

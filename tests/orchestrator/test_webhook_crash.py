"""A webhook sender that dies mid-send leaves a lease, not a delivery stuck in `sending`:
once the lease runs out another sender (a worker's beat task or the web process) sends it
again with the same delivery id, and it is delivered once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.conf import settings

from orchestrator.models import WebhookDelivery
from orchestrator.tasks import deliver_webhooks_task
from orchestrator.webhooks import do_create_webhook, enqueue
from tests.conftest import pipeline, scripted

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("outbound_allows_loopback")]


class HangingOnceReceiver:
    """Holds the first request open (its sender is killed meanwhile); answers 200 after that."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.first_arrived = threading.Event()
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                outer.ids.append(self.headers["X-Agentdeck-Delivery"])
                if len(outer.ids) == 1:
                    outer.first_arrived.set()
                    outer.release.wait(30)
                    return
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


SENDER = "import django; django.setup(); from orchestrator.webhooks import deliver_due; deliver_due()"


def test_it_sends_again_after_its_sender_was_killed_mid_send(team):
    receiver = HangingOnceReceiver()
    try:
        scripted(team, "x", {"text": "x"})
        pipe = pipeline(team, {"steps": [{"kind": "agent", "id": "a", "agent": "x", "prompt": "x"}]})
        do_create_webhook(pipe, receiver.url, ["run.failed"])
        enqueue(pipe.pk, "run.failed", {"run_id": 1, "status": "failed", "output": None, "error": "boom"})
        db = settings.DATABASES["default"]
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "WEBHOOK_TIMEOUT_S": "1",
               "AGENTDECK_OUTBOUND_ALLOW": "127.0.0.0/8"}
        if db["ENGINE"].endswith("postgresql"):
            env["DATABASE_URL"] = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
        else:
            env["SQLITE_PATH"] = str(db["NAME"])
        sender = subprocess.Popen([sys.executable, "-c", SENDER], cwd=settings.BASE_DIR, env=env)
        assert receiver.first_arrived.wait(60), "the first sender never sent"
        sender.send_signal(signal.SIGKILL)
        sender.wait(10)
        delivery = WebhookDelivery.objects.get()
        assert delivery.status == "sending"

        assert deliver_webhooks_task() == 0  # its lease still holds: nobody else sends it yet
        time.sleep(max(0.0, (delivery.next_attempt_at.timestamp() - time.time())) + 0.2)
        assert deliver_webhooks_task() == 1  # a worker's beat task takes it over

        delivery.refresh_from_db()
        assert delivery.status == "delivered" and delivery.attempts == 1
        assert receiver.ids == [str(delivery.pk)] * 2  # the same id both times: receivers deduplicate on it
        assert deliver_webhooks_task() == 0
    finally:
        receiver.close()

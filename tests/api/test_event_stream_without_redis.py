"""The API's event stream while Redis (the channel layer) is down serves the run's events
from the database (it sent nothing, not even a status line, and held the connection; found by
a review). The app runs under daphne with REDIS_URL pointing at a Redis of the test's own,
which the test stops. A run is queued (its stream stays open)."""

from __future__ import annotations

import http.client
import socket
import subprocess
import time
from urllib.parse import urlparse

import pytest

from mcpgateway.actions.access import do_create_api_key
from orchestrator.models import RunEvent
from tests.conftest import _free_port, pipeline, scripted, serving, start

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
SPEC = {"steps": [{"kind": "agent", "id": "work", "agent": "w", "prompt": "go"}]}


@pytest.fixture
def own_redis():
    port = _free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    yield port, proc
    if proc.poll() is None:
        proc.terminate()
        proc.wait(10)


def _stream(base: str, path: str, token: str, read_s: float = 4.0) -> tuple[int | None, str, bytes]:
    url = urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=read_s)
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    try:
        response = conn.getresponse()
    except TimeoutError:
        return None, "", b"(no response headers within %.0fs)" % read_s
    body = b""
    deadline = time.monotonic() + read_s
    try:
        while time.monotonic() < deadline:
            chunk = response.fp.read1(65536) if hasattr(response.fp, "read1") else response.read(1)
            if not chunk:
                body += b"<EOF: the server closed the stream>"
                break
            body += chunk
    except TimeoutError:
        pass
    except (http.client.IncompleteRead, ConnectionError) as exc:
        body += f"<{type(exc).__name__}>".encode()
    conn.close()
    return response.status, response.getheader("Content-Type", ""), body


def test_the_sse_stream_degrades_to_the_database_when_redis_is_down(team, owner, own_redis):
    port, redis_proc = own_redis
    scripted(team, "w", {"text": "done"})
    run = start(pipeline(team, SPEC))  # queued: nobody runs it (inline runner, not submitted)
    _, token = do_create_api_key(team.pk, "k", owner, scopes=["read", "run"])
    persisted = RunEvent.objects.filter(run=run).count()

    with serving({"REDIS_URL": f"redis://127.0.0.1:{port}/0", "AGENTDECK_RUNNER": "inline"}) as base:
        status, ctype, body = _stream(base, f"/api/v1/runs/{run.pk}/events/stream", token, 3)
        assert (status, ctype.split(";")[0]) == (200, "text/event-stream") and b"event: run." in body  # Redis up
        redis_proc.terminate()
        redis_proc.wait(10)
        started = time.monotonic()
        status, ctype, body = _stream(base, f"/api/v1/runs/{run.pk}/events/stream", token, 8)
        assert ctype.startswith("text/event-stream")
        took_to_first = time.monotonic() - started

    assert persisted >= 1 and status == 200 and took_to_first < 30
    assert b"event: run." in body, "the persisted events were not served from the database"
    assert b"<EOF" not in body and b"<Incomplete" not in body, "the stream broke instead of degrading"

"""/healthz says the process lives; /readyz checks the database, Redis and the workers, and
tells only staff or the monitoring token which part failed."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(client):
    """Readiness details are for operators: a staff session."""
    client.force_login(get_user_model().objects.create_user("ops", password="pw-ops-12345", is_staff=True))
    return client


def test_it_is_alive(client):
    assert client.get("/healthz").content == b"ok"


def test_it_is_ready_in_the_embedded_shape(client):
    body = client.get("/readyz").json()
    assert body["ready"] is True
    assert body["database"]["ok"] and body["workers"]["runner"] == "inline"


def test_it_is_not_ready_when_redis_is_unreachable(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["redis"]["ok"] is False


def test_it_is_not_ready_when_no_celery_worker_answers(client, settings, monkeypatch):
    import redis

    from dashboard import readiness

    # What is checked here is the answer, not the machine's speed: a loaded CI machine once took
    # longer than the 0.8 s deadline to connect and ping (the deadline has its own tests below).
    monkeypatch.setattr(readiness, "READINESS_TIMEOUT_S", 5.0)

    try:
        redis.Redis.from_url("redis://127.0.0.1:6379/13", socket_connect_timeout=1).ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("no Redis at 127.0.0.1:6379")
    from config.celery import app

    settings.RUNNER = "celery"
    app.conf.broker_url = "redis://127.0.0.1:6379/13"
    try:
        response = client.get("/readyz")
    finally:
        app.conf.broker_url = settings.CELERY_BROKER_URL or None
    assert response.status_code == 503
    assert response.json()["workers"] == {"ok": False, "runner": "celery", "workers": 0, "error": "no worker answered"}


def test_it_tells_anonymous_callers_only_the_status(settings):
    from django.test import Client

    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable"}


def test_it_tells_a_signed_in_team_member_only_the_status(owner):
    from django.test import Client

    client = Client()
    client.force_login(owner)
    response = client.get("/readyz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_it_gives_details_to_the_monitoring_token(settings):
    from django.test import Client

    settings.METRICS_TOKEN = "tok-readyz-123"
    body = Client().get("/readyz", HTTP_AUTHORIZATION="Bearer tok-readyz-123").json()
    assert body["status"] == "ok" and body["database"]["ok"] is True
    assert Client().get("/readyz", HTTP_AUTHORIZATION="Bearer wrong").json() == {"status": "ok"}


@pytest.fixture
def silent_redis():
    """A TCP port that accepts connections and never answers: a hung Redis."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    server.close()


def _timed_readyz(client) -> tuple[int, dict, float]:
    import time

    started = time.monotonic()
    response = client.get("/readyz")
    return response.status_code, response.json(), time.monotonic() - started


def test_it_answers_within_a_second_when_redis_hangs(client, settings, silent_redis):
    settings.REDIS_URL = silent_redis
    status, body, took = _timed_readyz(client)
    assert status == 503 and body["redis"]["ok"] is False and body["database"]["ok"] is True
    assert took < 1.0, f"/readyz took {took:.2f} s"


def test_it_answers_within_a_second_when_the_broker_hangs_too(client, settings, silent_redis):
    from config.celery import app

    settings.REDIS_URL = silent_redis
    settings.RUNNER = "celery"
    app.conf.broker_url = silent_redis
    try:
        status, body, took = _timed_readyz(client)
    finally:
        app.conf.broker_url = settings.CELERY_BROKER_URL or None
    assert status == 503 and body["workers"]["ok"] is False and body["redis"]["ok"] is False
    assert took < 1.0, f"/readyz took {took:.2f} s (the probes run at the same time, each with a timeout)"


def test_it_reports_a_probe_that_does_not_answer_as_timed_out(client, monkeypatch):
    import time

    from dashboard import readiness

    monkeypatch.setitem(readiness.PROBES, "workers", lambda: time.sleep(3) or {"ok": True})
    status, body, took = _timed_readyz(client)
    assert status == 503 and body["workers"] == {"ok": False, "error": f"no answer within {readiness.READINESS_TIMEOUT_S} s"}
    assert took < 1.0


def test_it_waits_on_a_hung_probe_instead_of_starting_it_again(client, monkeypatch):
    import threading

    from dashboard import readiness

    started, release = [], threading.Event()

    def hung() -> dict:
        started.append(1)
        release.wait(10)
        return {"ok": True}

    monkeypatch.setitem(readiness.PROBES, "workers", hung)
    try:
        for _ in range(8):  # more requests than the probe pool has threads
            status, _, took = _timed_readyz(client)
            assert status == 503 and took < 1.0
        assert len(started) == 1, "one thread per hung probe, whatever the number of requests"
    finally:
        release.set()

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


def test_it_is_not_ready_when_no_celery_worker_answers(client, settings):
    import redis

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

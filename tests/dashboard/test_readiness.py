"""/healthz says the process lives; /readyz checks the database, Redis and the workers."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


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

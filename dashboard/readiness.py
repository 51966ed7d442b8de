"""What /readyz checks: the database, Redis (when configured), Celery workers (when runs go to them)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import connection


def _database() -> dict[str, Any]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True, "vendor": connection.vendor}
    except Exception as exc:  # readiness reports, it does not raise
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def _redis() -> dict[str, Any]:
    url = settings.REDIS_URL or settings.CELERY_BROKER_URL
    if not url or not url.startswith("redis"):
        return {"ok": True, "configured": False}
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2).ping()
        return {"ok": True, "configured": True}
    except redis.exceptions.RedisError as exc:
        return {"ok": False, "configured": True, "error": str(exc)}


def _workers() -> dict[str, Any]:
    if settings.RUNNER != "celery":
        return {"ok": True, "runner": settings.RUNNER}
    from config.celery import app

    try:
        # A fresh connection each time: the broker may have changed, and a cached one may be dead.
        with app.connection_for_write() as connection:
            replies = app.control.ping(timeout=1.0, connection=connection) or []
    except Exception as exc:
        return {"ok": False, "runner": "celery", "error": f"{type(exc).__name__}: {exc}"}
    return {"ok": bool(replies), "runner": "celery", "workers": len(replies),
            **({} if replies else {"error": "no worker answered"})}


def readiness() -> dict[str, dict[str, Any]]:
    return {"database": _database(), "redis": _redis(), "workers": _workers()}

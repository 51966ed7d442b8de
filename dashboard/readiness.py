"""What /readyz checks: the database, Redis (when configured), Celery workers (when runs go to them).

The details (which dependency failed and why, the database vendor, worker counts) tell an
attacker what to aim at, so only staff or a monitoring token (`METRICS_TOKEN`) see them.
"""

from __future__ import annotations

import hmac
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest

from authz.policy import is_instance_operator


def may_see_details(request: HttpRequest) -> bool:
    """Instance operators (staff) and `Authorization: Bearer <METRICS_TOKEN>` see the readiness details."""
    if is_instance_operator(getattr(request, "user", None)):
        return True
    token = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    return bool(token) and hmac.compare_digest(header.encode(), f"Bearer {token}".encode())


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

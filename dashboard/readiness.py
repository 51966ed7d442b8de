"""What /readyz checks: the database, Redis (when configured), Celery workers (when runs go to them).

The probes run at the same time, each with its own timeout, and the whole answer comes
within `READINESS_TIMEOUT_S` (under 1 s) even when a dependency hangs or is gone: a probe
that has not answered by then is reported as timed out. The container's health is /healthz
(liveness), so a web process stays healthy while workers or Redis are down.

The details (which dependency failed and why, the database vendor, worker counts) tell an
attacker what to aim at, so only staff or a monitoring token (`METRICS_TOKEN`) see them.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
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


# The whole answer's deadline, and each network probe's own timeouts inside it.
READINESS_TIMEOUT_S = 0.8
PROBE_TIMEOUT_S = 0.5
PING_TIMEOUT_S = 0.4  # how long workers have to answer a ping, at most
PING_MARGIN_S = 0.1  # what the ping leaves of the deadline for the answer to get back to the request
# Probes run here, not in the request's thread; a probe stuck past its timeout holds only one.
_probes = ThreadPoolExecutor(max_workers=6, thread_name_prefix="agentdeck-readyz")


def _database() -> dict[str, Any]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True, "vendor": connection.vendor}
    except Exception as exc:  # readiness reports, it does not raise
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        connection.close()  # a probe thread keeps no connection (nor a pooled one)


def _redis() -> dict[str, Any]:
    url = settings.REDIS_URL or settings.CELERY_BROKER_URL
    if not url or not url.startswith("redis"):
        return {"ok": True, "configured": False}
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=PROBE_TIMEOUT_S, socket_timeout=PROBE_TIMEOUT_S,
                                      retry=Retry(NoBackoff(), 0))
        try:
            client.ping()
        finally:
            client.close()
        return {"ok": True, "configured": True}
    except redis.exceptions.RedisError as exc:
        return {"ok": False, "configured": True, "error": str(exc)}


def _workers() -> dict[str, Any]:
    if settings.RUNNER != "celery":
        return {"ok": True, "runner": settings.RUNNER}
    from config.celery import app

    started = time.monotonic()
    try:
        # A fresh connection each time: the broker may have changed, and a cached one may be dead.
        connection = app.connection_for_write(connect_timeout=PROBE_TIMEOUT_S)
        try:
            connection.ensure_connection(max_retries=1, timeout=PROBE_TIMEOUT_S)
            # The workers get what is left of the deadline after a slow connect, so a loaded
            # machine still reports "no worker answered" rather than a probe timeout.
            left = READINESS_TIMEOUT_S - PING_MARGIN_S - (time.monotonic() - started)
            replies = app.control.ping(timeout=max(0.05, min(PING_TIMEOUT_S, left)), connection=connection) or []
        finally:
            _probes.submit(connection.release)  # closing takes a while; the answer need not wait
    except Exception as exc:
        return {"ok": False, "runner": "celery", "error": f"{type(exc).__name__}: {exc}"}
    return {"ok": bool(replies), "runner": "celery", "workers": len(replies),
            **({} if replies else {"error": "no worker answered"})}


PROBES: dict[str, Callable[[], dict[str, Any]]] = {"database": _database, "redis": _redis, "workers": _workers}


_in_flight: dict[Callable[[], dict[str, Any]], Future[dict[str, Any]]] = {}
_in_flight_lock = threading.Lock()


def readiness() -> dict[str, dict[str, Any]]:
    """Every probe's answer, or a timeout for those that did not answer within the deadline.

    A probe still running from an earlier request is waited on again rather than started twice,
    so a hung dependency holds one thread per probe, never the whole pool."""
    futures: dict[str, Future[dict[str, Any]]] = {}
    with _in_flight_lock:
        for name, probe in PROBES.items():
            future = _in_flight.get(probe)
            if future is None or future.done():
                future = _in_flight[probe] = _probes.submit(probe)
            futures[name] = future
    wait(futures.values(), timeout=READINESS_TIMEOUT_S)
    report: dict[str, dict[str, Any]] = {}
    for name, future in futures.items():
        if future.done():
            report[name] = future.result()
        else:
            report[name] = {"ok": False, "error": f"no answer within {READINESS_TIMEOUT_S} s"}
    return report

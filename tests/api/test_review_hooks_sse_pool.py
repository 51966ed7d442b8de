# Found by an outside review (2026-12-07, webhooks, streams and traces); failed before its fix.
"""An open API event stream holds one of the web process's pooled database connections for as
long as it stays open (its `sync_to_async` reads run on the request's own thread, whose
connection is handed back only when the response ends). With the default pool (DB_POOL_MAX=4),
a few streams on a queued or long-running run starve every other request of the web process:
they wait DB_POOL_TIMEOUT_S and answer 503."""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from urllib.parse import urlparse

import pytest
from django.conf import settings

from mcpgateway.actions.access import do_create_api_key
from tests.conftest import pipeline, scripted, serving, start

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
SPEC = {"steps": [{"kind": "agent", "id": "work", "agent": "w", "prompt": "go"}]}
POOL = 4


def _open_stream(base: str, path: str, token: str) -> tuple[int, http.client.HTTPConnection]:
    """Opens the stream and reads its first frames; the connection stays open."""
    url = urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    response = conn.getresponse()
    if response.status == 200:
        assert b"event: run." in response.fp.read1(65536)
    return response.status, conn


def _get(url: str, token: str) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_open_event_streams_do_not_starve_the_web_process_of_database_connections(team, owner):
    if not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        pytest.skip("the connection pool is PostgreSQL's")
    scripted(team, "w", {"text": "done"})
    run = start(pipeline(team, SPEC))  # queued, nobody executes it: its streams stay open
    _, token = do_create_api_key(team.pk, "k", owner, scopes=["read", "run"])
    env = {"AGENTDECK_RUNNER": "inline", "REDIS_URL": "", "CELERY_BROKER_URL": "", "DB_POOL_MAX": str(POOL),
           "DB_POOL_MIN": "1", "DB_POOL_TIMEOUT_S": "3"}
    statuses, conns = [], []
    with serving(env) as base:
        try:
            for _ in range(POOL):  # as many streams as the pool has connections (one viewer, one run)
                status, conn = _open_stream(base, f"/api/v1/runs/{run.pk}/events/stream", token)
                statuses.append(status)
                conns.append(conn)
            plain = _get(f"{base}/api/v1/runs/{run.pk}", token)
        finally:
            for conn in conns:
                conn.close()
    assert statuses == [200] * POOL and plain == 200, (
        f"with event streams open, the streams answered {statuses} and a plain GET of the run {plain}: "
        "each open stream holds a pooled database connection, so the rest of the web process gets 503s")

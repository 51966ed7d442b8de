"""A page or API call whose database is out of reach answers 503 with `Retry-After`, not a
500 (the README said so of every request; only the API did it). The app runs under daphne
with DATABASE_URL pointing at a port where no PostgreSQL listens: every query fails to
connect, as it does while the server restarts."""

from __future__ import annotations

import http.cookiejar
import json
import re
import sqlite3
import urllib.error
import urllib.parse
import urllib.request

import pytest
from django.conf import settings
from django.db import OperationalError, connection
from django.test import Client

from config.middleware import database_unavailable
from orchestrator.actions.teams import do_create_team
from tests.conftest import _free_port, serving

pytestmark = [pytest.mark.slow]


def _fetch(opener, url: str, data: dict[str, str] | None = None, headers: dict[str, str] | None = None):
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def test_a_page_and_the_api_answer_503_when_the_database_is_unreachable():
    nowhere = f"postgres://postgres@127.0.0.1:{_free_port()}/agentdeck"
    with serving({"DATABASE_URL": nowhere, "DB_POOL_MIN": "0", "DB_POOL_TIMEOUT_S": "2",
                  "GATEWAY_AUTOSTART": "false"}) as base:
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        status, _, page = _fetch(opener, f"{base}/accounts/login/")
        assert status == 200, page[:300]
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        status, headers, body = _fetch(opener, f"{base}/accounts/login/",
                                       {"csrfmiddlewaretoken": token, "username": "admin", "password": "x"},
                                       {"Referer": f"{base}/accounts/login/"})
        assert status == 503, body[:500]
        assert headers.get("Retry-After") == "5"
        assert "retry shortly" in body

        status, headers, body = _fetch(opener, f"{base}/api/v1/runs", headers={"Authorization": "Bearer adk_" + "x" * 43})
        assert status == 503, body[:500]
        assert headers.get("Retry-After") == "5"
        assert json.loads(body)["error"]["code"] == "unavailable"


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "sqlite", reason="holds SQLite's write lock; readers go on in WAL mode")
def test_a_database_error_in_a_middleware_answers_503_too(team, owner):
    """Switching team only reads in the view; SessionMiddleware saves the session after it. With
    the database's write lock held elsewhere that save fails ("database is locked") outside any
    view, where the middleware's `process_exception` never sees it: Django's 500 page, until
    `handler500` recognised it. A schema error (no such table) stays a 500."""
    client = Client(raise_request_exception=False)
    client.force_login(owner)
    other = do_create_team("Other", owner)
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout=200")  # this thread's connection: the client's requests
    blocker = sqlite3.connect(str(settings.DATABASES["default"]["NAME"]), isolation_level=None, timeout=30)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # writers wait, then get "database is locked"; readers read
        response = client.post("/teams/switch/", {"team": other.pk, "next": "/"})
        assert response.status_code == 503, response.content[:300]
        assert response["Retry-After"] == "5"
        assert b"retry shortly" in response.content
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    response = client.post("/teams/switch/", {"team": other.pk, "next": "/"})
    assert response.status_code == 302


def test_a_missing_table_is_not_an_outage():
    assert not database_unavailable(OperationalError("no such table: orchestrator_run"))
    assert database_unavailable(OperationalError("database is locked"))
    assert not database_unavailable(ValueError("database is locked"))

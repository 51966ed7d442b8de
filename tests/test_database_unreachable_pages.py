"""A page or API call whose database is out of reach answers 503 with `Retry-After`, not a
500 (the README said so of every request; only the API did it). The app runs under daphne
with DATABASE_URL pointing at a port where no PostgreSQL listens: every query fails to
connect, as it does while the server restarts."""

from __future__ import annotations

import http.cookiejar
import json
import re
import urllib.error
import urllib.parse
import urllib.request

import pytest

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

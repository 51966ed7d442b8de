# Found by an outside review (2026-12-07, the API and config import); failed before its fix.
"""An idempotent run start replayed at the same moment (PostgreSQL) answered 429. The test widens the race window with a
barrier around a product function (calling the real one), so the interleaving is certain."""

from __future__ import annotations

import json
import threading

import pytest
from django.db import connection, connections  # noqa: F401 - `connection` is read by the skipif
from django.test import Client

import orchestrator.api as runs_api
from orchestrator.models import Run
from tests.api.conftest import keys  # noqa: F401 - fixture
from tests.conftest import pipeline

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.skipif("connection.vendor != 'postgresql'", reason="SQLite serialises the writers")]


def _both(call, barrier_at, monkeypatch, target, name):
    """Run `call()` in two threads; the named function waits for the other thread (3 s at most)."""
    real = getattr(target, name)
    barrier = threading.Barrier(2)

    def waiting(*args, **kwargs):
        result = real(*args, **kwargs) if barrier_at == "after" else None
        try:
            barrier.wait(timeout=3)
        except threading.BrokenBarrierError:
            pass
        return result if barrier_at == "after" else real(*args, **kwargs)

    monkeypatch.setattr(target, name, waiting)
    results: list[tuple[int, dict]] = []

    def one():
        try:
            response = call(Client(raise_request_exception=False))
            results.append((response.status_code, response.json() if response.content else None))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_a_concurrent_replay_of_an_idempotent_start_returns_the_run_not_429(keys, monkeypatch):  # noqa: F811
    """POST /runs with an Idempotency-Key, sent twice at once (a client's retry after a timeout),
    under a concurrent-runs limit of 1: the second request found no key before the first
    committed, then waited on the team lock and was refused by the limit — 429 "1 concurrent
    runs for the team" for the very run it asked for, instead of that run (200)."""
    from orchestrator.actions.limits import do_save_limit

    do_save_limit(keys["team"], "team", "concurrent_runs", 1)
    pipe = pipeline(keys["team"], {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "hi"}]})
    body = json.dumps({"pipeline": pipe.pk, "input": {}})

    def post(client):
        return client.post("/api/v1/runs", body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="retry-1",
                           HTTP_AUTHORIZATION=f"Bearer {keys['builder']}")

    from orchestrator.runners import get_runner
    monkeypatch.setattr(type(get_runner()), "submit", lambda self, run_id: None)  # keep the run queued
    results = _both(post, "before", monkeypatch, runs_api, "do_start_run")
    assert Run.objects.filter(team=keys["team"]).count() == 1
    statuses = sorted(status for status, _ in results)
    assert statuses == [200, 201], results
    assert results[0][1]["id"] == results[1][1]["id"], results

"""API rate limits and concurrency limits: 429 with Retry-After, exactly the limit admitted
among concurrent requests — with the database counters and with Redis."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client

from orchestrator.models import Limit, Run
from tests.conftest import pipeline

pytestmark = pytest.mark.django_db(transaction=True)


def _burst(token: str, path: str, count: int) -> list[tuple[int, str | None]]:
    results: list[tuple[int, str | None]] = []
    lock = threading.Lock()
    start = threading.Barrier(count)

    def one() -> None:
        start.wait()
        try:
            response = Client().get(f"/api/v1{path}", HTTP_AUTHORIZATION=f"Bearer {token}")
            with lock:
                results.append((response.status_code, response.get("Retry-After")))
        finally:
            connection.close()

    threads = [threading.Thread(target=one) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


@pytest.mark.parametrize("backend", ["database", "redis"])
def test_it_admits_exactly_the_limit_of_a_concurrent_burst(keys, settings, backend, monkeypatch):
    if backend == "redis":
        import redis

        try:
            # A database of its own (not the gateway tests' 15), emptied: counters of earlier runs in this minute must not count.
            redis.Redis.from_url("redis://127.0.0.1:6379/8", socket_connect_timeout=1).flushdb()
        except redis.exceptions.ConnectionError:
            pytest.skip("no Redis at 127.0.0.1:6379")
        from mcpgateway import ratelimit

        monkeypatch.setattr(ratelimit, "_limiter", ratelimit.RedisLimiter("redis://127.0.0.1:6379/8"))
    Limit.objects.create(team=keys["team"], scope="api_key", api_key_id=_key_id(keys, "viewer"), kind="requests_per_minute",
                         value=Decimal(10))

    results = _burst(keys["viewer"], "/runs", 30)

    assert len(results) == 30
    assert sum(1 for status, _ in results if status == 200) == 10
    limited = [(s, r) for s, r in results if s != 200]
    assert all(s == 429 and r is not None and int(r) >= 1 for s, r in limited)
    # another key of the team is not affected
    assert Client().get("/api/v1/runs", HTTP_AUTHORIZATION=f"Bearer {keys['owner']}").status_code == 200


def test_it_limits_concurrent_runs_per_team(api, keys, monkeypatch):
    from orchestrator.runners.inline import InlineRunner

    monkeypatch.setattr(InlineRunner, "submit", lambda self, run_id: None)  # runs stay queued (active)
    pipe = pipeline(keys["team"], {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "x"}]})
    Limit.objects.create(team=keys["team"], scope="team", kind="concurrent_runs", value=Decimal(2))

    statuses = [api.call("post", "/runs", keys["builder"], {"pipeline": pipe.pk})[0] for _ in range(3)]

    assert statuses == [201, 201, 429]
    assert Run.objects.count() == 2


def _key_id(keys, name: str) -> int:
    from mcpgateway.models import ApiKey

    return ApiKey.objects.get(name=name).pk


def test_a_resume_counts_against_the_concurrent_runs_limit_as_a_start_does(api, keys, monkeypatch):
    """A run paused for a review is not active; approving its review made it active again
    without a look at the limit (two active runs under a limit of one). The decision is now
    refused the way a start is (429, Retry-After), and goes through once a slot is free."""
    from orchestrator.actions import do_start_run
    from orchestrator.models import ReviewItem
    from orchestrator.runners.inline import InlineRunner
    from tests.conftest import execute

    gate = {"steps": [{"kind": "review", "id": "g", "instructions": "ok?"}, {"kind": "agent", "id": "a", "agent": "w", "prompt": "x"}]}
    paused = execute(do_start_run(pipeline(keys["team"], gate, name="gated").latest_version(), {}, submit=False))
    assert paused.status == "waiting_review"
    Limit.objects.create(team=keys["team"], scope="team", kind="concurrent_runs", value=Decimal(1))
    monkeypatch.setattr(InlineRunner, "submit", lambda self, run_id: None)  # runs stay queued (active)
    plain = pipeline(keys["team"], {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "x"}]}, name="plain")
    assert api.call("post", "/runs", keys["builder"], {"pipeline": plain.pk})[0] == 201  # the one slot

    item = ReviewItem.objects.get(run=paused)
    status, body = api.call("post", f"/reviews/{item.pk}/decide", keys["reviewer"], {"action": "approve"})
    assert status == 429, body
    assert Run.objects.filter(status__in=["queued", "running"]).count() == 1
    assert ReviewItem.objects.get(pk=item.pk).status == "pending"  # the decision was not kept either

    Run.objects.exclude(pk=paused.pk).update(status="succeeded")  # the slot frees
    status, body = api.call("post", f"/reviews/{item.pk}/decide", keys["reviewer"], {"action": "approve"})
    assert status == 200, body


def test_a_rejection_needs_no_slot_under_the_concurrent_runs_limit(api, keys, monkeypatch):
    """A rejection only lets the run end: a reviewer can clear the queue while the team is at its limit."""
    from orchestrator.actions import do_start_run
    from orchestrator.models import ReviewItem
    from orchestrator.runners.inline import InlineRunner
    from tests.conftest import execute

    gate = {"steps": [{"kind": "review", "id": "g", "instructions": "ok?"}, {"kind": "agent", "id": "a", "agent": "w", "prompt": "x"}]}
    paused = execute(do_start_run(pipeline(keys["team"], gate, name="gated").latest_version(), {}, submit=False))
    Limit.objects.create(team=keys["team"], scope="team", kind="concurrent_runs", value=Decimal(1))
    monkeypatch.setattr(InlineRunner, "submit", lambda self, run_id: None)
    plain = pipeline(keys["team"], {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "x"}]}, name="plain")
    assert api.call("post", "/runs", keys["builder"], {"pipeline": plain.pk})[0] == 201
    item = ReviewItem.objects.get(run=paused)
    status, body = api.call("post", f"/reviews/{item.pk}/decide", keys["reviewer"], {"action": "reject", "note": "no"})
    assert status == 200, body
    assert ReviewItem.objects.get(pk=item.pk).status == "rejected"

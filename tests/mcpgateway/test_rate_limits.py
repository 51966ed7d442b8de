"""Rate limits admit exactly N of a concurrent burst and never more than N in any window,
with Redis and with the database; a Redis that does not answer degrades to the database."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid

import pytest
from asgiref.sync import async_to_sync

from mcpgateway.ratelimit import DatabaseLimiter, RedisLimiter

REDIS_URL = "redis://127.0.0.1:6379/15"


def _burst(limiter, key: str, limit: int, calls: int, threads: int = 10) -> list[bool]:
    """`calls` hits from `threads` threads at once, each thread with its own event loop."""
    results: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def worker(n: int) -> None:
        async def many() -> list[bool]:
            decisions = await asyncio.gather(*(limiter.hit(key, limit) for _ in range(n)))
            return [d.allowed for d in decisions]

        start.wait()
        got = async_to_sync(many)()
        with lock:
            results.extend(got)

    per_thread = calls // threads
    pool = [threading.Thread(target=worker, args=(per_thread,)) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=60)
    return results


@pytest.mark.django_db(transaction=True)
def test_it_admits_exactly_the_limit_with_the_database():
    results = _burst(DatabaseLimiter(), f"k-{uuid.uuid4()}", limit=20, calls=100)
    assert len(results) == 100
    assert sum(results) == 20


def test_it_admits_exactly_the_limit_with_redis():
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.exceptions.ConnectionError:
        pytest.skip(f"no Redis at {REDIS_URL}")
    results = _burst(RedisLimiter(REDIS_URL), f"k-{uuid.uuid4()}", limit=20, calls=100)
    assert len(results) == 100
    assert sum(results) == 20


@pytest.mark.django_db(transaction=True)
def test_it_tells_how_long_to_wait_and_keeps_keys_apart():
    limiter = DatabaseLimiter()
    key = f"k-{uuid.uuid4()}"
    first = async_to_sync(limiter.hit)(key, 1)
    second = async_to_sync(limiter.hit)(key, 1)
    other = async_to_sync(limiter.hit)(key + "-other", 1)
    assert first.allowed and other.allowed and not second.allowed
    assert 0 < second.retry_after_s <= 60


def _straddle(limiter, key: str, limit: int, window_s: float) -> int:
    """`limit` hits just before a fixed window edge and `limit` just after it: how many got in."""
    async def hits() -> int:
        edge = (time.time() // window_s + 1) * window_s
        if edge - time.time() < 0.3:
            edge += window_s
        await asyncio.sleep(edge - time.time() - 0.2)
        before = await asyncio.gather(*(limiter.hit(key, limit, window_s) for _ in range(limit)))
        await asyncio.sleep(max(0.0, edge - time.time()) + 0.05)
        after = await asyncio.gather(*(limiter.hit(key, limit, window_s) for _ in range(limit)))
        return sum(d.allowed for d in before + after)

    return async_to_sync(hits)()


@pytest.mark.django_db(transaction=True)
def test_it_admits_at_most_the_limit_across_a_window_edge_with_the_database():
    assert _straddle(DatabaseLimiter(), f"k-{uuid.uuid4()}", limit=10, window_s=2) == 10


def test_it_admits_at_most_the_limit_across_a_window_edge_with_redis():
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.exceptions.ConnectionError:
        pytest.skip(f"no Redis at {REDIS_URL}")
    assert _straddle(RedisLimiter(REDIS_URL), f"k-{uuid.uuid4()}", limit=10, window_s=2) == 10


@pytest.mark.django_db(transaction=True)
def test_it_admits_again_once_the_oldest_hit_leaves_the_window():
    limiter, key = DatabaseLimiter(), f"k-{uuid.uuid4()}"

    async def hits() -> tuple[list[bool], float, bool]:
        first = [(await limiter.hit(key, 3, 1)).allowed for _ in range(4)]
        refused = await limiter.hit(key, 3, 1)
        await asyncio.sleep(refused.retry_after_s + 0.05)
        return first, refused.retry_after_s, (await limiter.hit(key, 3, 1)).allowed

    first, retry_after, later = async_to_sync(hits)()
    assert first == [True, True, True, False]
    assert 0 < retry_after <= 1
    assert later is True


@pytest.mark.django_db(transaction=True)
def test_it_falls_back_to_the_database_when_redis_does_not_answer():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    limiter = RedisLimiter(f"redis://127.0.0.1:{port}/0")
    started = time.monotonic()
    results = _burst(limiter, f"k-{uuid.uuid4()}", limit=5, calls=20, threads=2)
    assert sum(results) == 5
    assert time.monotonic() - started < 10


@pytest.mark.django_db(transaction=True)
def test_processes_whose_clocks_disagree_share_one_window_on_postgresql(monkeypatch):
    """The database log stamped, pruned and counted with each process's own clock: one 30 s
    behind wrote stamps that a correct one pruned early, and 10 calls went through within
    31 s under a limit of 5 a minute. On PostgreSQL the stamps now come from the server's clock
    (SQLite has one host, so one clock). Here the two processes are this one with its clock
    set 30 s back, then 31 s ahead; within one real minute, so the second must refuse."""
    from django.db import connection

    from mcpgateway import ratelimit

    if connection.vendor != "postgresql":
        pytest.skip("SQLite runs on one host: one clock")
    key, limiter = f"k-{uuid.uuid4()}", DatabaseLimiter()
    real = time.time
    monkeypatch.setattr(ratelimit.time, "time", lambda: real() - 30)  # a process whose clock runs behind
    behind = [async_to_sync(limiter.hit)(key, 5).allowed for _ in range(5)]
    # Another, its clock 31 s ahead: by its clock the first one's stamps are more than a minute
    # old; it pruned them and admitted 5 more.
    monkeypatch.setattr(ratelimit.time, "time", lambda: real() + 31)
    ahead = [async_to_sync(limiter.hit)(key, 5).allowed for _ in range(5)]
    assert behind == [True] * 5
    assert ahead == [False] * 5

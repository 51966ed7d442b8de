"""Rate limits admit exactly N of a concurrent burst, with Redis and with the database."""

from __future__ import annotations

import asyncio
import threading
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

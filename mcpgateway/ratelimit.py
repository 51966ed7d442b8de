"""Fixed-window rate limits, atomic under concurrency: Redis when configured, else the database.

`hit(key, limit)` admits a call if fewer than `limit` were admitted in the current
minute for `key`; exactly `limit` of any burst get through.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import connection

from config.db_writer import BatchWriter
from mcpgateway.models import RateCounter


@dataclass(slots=True)
class Decision:
    allowed: bool
    count: int
    retry_after_s: float


class DatabaseLimiter:
    """Counters in a table: a conditional UPDATE admits a call only while below the limit.

    Hits from concurrent calls are committed together (`gateway_writes`). Counters need
    atomicity, not durability, so their commits skip the fsync: a crash forgets at most
    the current window's counts.
    """

    async def hit(self, key: str, limit: int, window_s: int = 60) -> Decision:
        now = time.time()
        window = int(now // window_s)
        admitted = await gateway_writes.submit("ratelimit", (key, window, limit))
        return Decision(admitted, 0, 0.0 if admitted else (window + 1) * window_s - now)


def _count_hits(hits: list[tuple[str, int, int]]) -> list[bool]:
    q = connection.ops.quote_name
    table, k, w, c = q(RateCounter._meta.db_table), q("key"), q("window"), q("count")
    results = []
    with connection.cursor() as cursor:
        for key, window, _ in {(h[0], h[1], 0) for h in hits}:
            cursor.execute(f"INSERT INTO {table} ({k}, {w}, {c}) VALUES (%s, %s, 0) ON CONFLICT ({k}, {w}) DO NOTHING",
                           [key, window])
        for key, window, limit in hits:
            cursor.execute(f"UPDATE {table} SET {c} = {c} + 1 WHERE {k} = %s AND {w} = %s AND {c} < %s", [key, window, limit])
            results.append(cursor.rowcount == 1)
        oldest = min(h[1] for h in hits) - 1
        if oldest % 10 == 0:
            cursor.execute(f"DELETE FROM {table} WHERE {w} < %s", [oldest])
    return results


gateway_writes = BatchWriter("gateway-writes")
gateway_writes.register("ratelimit", _count_hits, durable=False)


class RedisLimiter:
    """INCR + EXPIRE in one transaction per call; admitted while the count is within the limit."""

    def __init__(self, url: str):
        self.url = url
        self._clients: dict[asyncio.AbstractEventLoop, object] = {}

    def _client(self):
        import redis.asyncio as redis

        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5)
            self._clients[loop] = client
        return client

    async def hit(self, key: str, limit: int, window_s: int = 60) -> Decision:
        now = time.time()
        window = int(now // window_s)
        name = f"agentdeck:rl:{key}:{window}"
        async with self._client().pipeline(transaction=True) as pipe:
            count, _ = await pipe.incr(name).expire(name, window_s * 2).execute()
        allowed = count <= limit
        return Decision(allowed, count, 0.0 if allowed else (window + 1) * window_s - now)


_limiter: DatabaseLimiter | RedisLimiter | None = None


def get_limiter() -> DatabaseLimiter | RedisLimiter:
    global _limiter
    if _limiter is None:
        _limiter = RedisLimiter(settings.REDIS_URL) if settings.REDIS_URL else DatabaseLimiter()
    return _limiter

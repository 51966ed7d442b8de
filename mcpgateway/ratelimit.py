"""Sliding-window rate limits, atomic under concurrency: Redis when configured, else the database.

`hit(key, limit, window_s)` admits a call only if fewer than `limit` calls were admitted
for `key` in the `window_s` seconds before it: a log of admission times, so no burst can
straddle a window edge (a fixed per-minute window admits 2N around a minute boundary).

When Redis is configured but does not answer, limits fall back to the database counters
for a few seconds and then try Redis again: the documented policy is "degrade to the
database, never fail open, never fail the request with a 500".
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from dataclasses import dataclass

from django.conf import settings
from django.db import connection

from config.db_writer import BatchWriter
from mcpgateway.models import RateCounter

log = logging.getLogger(__name__)

# Redis is tried again this long after it failed to answer.
REDIS_RETRY_AFTER_S = 5.0


@dataclass(slots=True)
class Decision:
    allowed: bool
    count: int
    retry_after_s: float


class DatabaseLimiter:
    """A log of admission times in the `RateCounter` table (one row per admitted call).

    Each key has a header row (`window = 0`) whose update locks the key, so concurrent
    processes count and insert one at a time per key (PostgreSQL row lock; SQLite has one
    writer). Hits from concurrent calls of one process commit together (`gateway_writes`);
    they need atomicity, not durability, so their commits skip the fsync.
    """

    async def hit(self, key: str, limit: int, window_s: float = 60) -> Decision:
        return await gateway_writes.submit("ratelimit", (key, limit, window_s))


def _count_hits(hits: list[tuple[str, int, float]]) -> list[Decision]:
    q = connection.ops.quote_name
    table, k, w, c = q(RateCounter._meta.db_table), q("key"), q("window"), q("count")
    results = []
    with connection.cursor() as cursor:
        base_us, base_at = _server_now_us(cursor), time.monotonic()
        # Every key of the batch locked first, in one order for all processes: locked hit by
        # hit, two processes' batches holding a team's key and a caller's key in opposite
        # orders deadlocked on PostgreSQL, and each lost batch failed all its calls.
        for key in sorted({hit[0] for hit in hits}):
            cursor.execute(f"INSERT INTO {table} ({k}, {w}, {c}) VALUES (%s, 0, 0) ON CONFLICT ({k}, {w}) DO NOTHING", [key])
            cursor.execute(f"UPDATE {table} SET {c} = {c} WHERE {k} = %s AND {w} = 0", [key])  # lock the key
        for key, limit, window_s in hits:
            now_us = base_us + int((time.monotonic() - base_at) * 1_000_000)
            since = now_us - int(window_s * 1_000_000)
            cursor.execute(f"DELETE FROM {table} WHERE {k} = %s AND {w} > 0 AND {w} <= %s", [key, since])
            cursor.execute(f"SELECT COUNT(*), MIN({w}) FROM {table} WHERE {k} = %s AND {w} > 0", [key])
            count, oldest = cursor.fetchone()
            if count < limit:
                # Unique per key: step past a row admitted in the same microsecond.
                cursor.execute(f"SELECT COALESCE(MAX({w}), 0) FROM {table} WHERE {k} = %s", [key])
                stamp = max(now_us, cursor.fetchone()[0] + 1)
                cursor.execute(f"INSERT INTO {table} ({k}, {w}, {c}) VALUES (%s, %s, 1)", [key, stamp])
                results.append(Decision(True, count + 1, 0.0))
            else:
                retry = max(0.0, (oldest - since) / 1_000_000) if oldest else window_s
                results.append(Decision(False, count, retry))
        global _batches
        _batches += 1
        if _batches % 100 == 0:  # keys nobody hits again: their rows outlive any window we use
            cursor.execute(f"DELETE FROM {table} WHERE {w} > 0 AND {w} < %s", [base_us - 3600 * 1_000_000])
    return results


def _server_now_us(cursor) -> int:
    """Now, by the database's clock on PostgreSQL (the Redis path uses the Redis server's): the
    processes that share a log must share a clock, or one whose clock runs behind writes
    stamps that another prunes early (10 calls admitted in 31 s under a limit of 5 a minute),
    and one an hour ahead wipes every log. SQLite has one host, so one clock."""
    if connection.vendor == "postgresql":
        cursor.execute("SELECT (extract(epoch from clock_timestamp()) * 1000000)::bigint")
        return int(cursor.fetchone()[0])
    return int(time.time() * 1_000_000)


_batches = 0


gateway_writes = BatchWriter("gateway-writes")
gateway_writes.register("ratelimit", _count_hits, durable=False)

# KEYS[1]: the key's sorted set. ARGV: window (µs), limit, a unique member.
# Time comes from the Redis server, so processes with skewed clocks agree.
_SLIDING_WINDOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
  return {1, count + 1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, count, tonumber(oldest[2]) + window - now}
"""


class RedisLimiter:
    """One Lua script per call: prune the key's log, count, admit while below the limit.

    A Redis that does not answer (down, restarting, network) sends the hit to the
    database limiter instead, so callers see limits enforced and never a connection error.
    """

    def __init__(self, url: str, fallback: DatabaseLimiter | None = None):
        self.url = url
        self.fallback = fallback or DatabaseLimiter()
        # One client per event loop (a client belongs to the loop it was made on); loops that
        # are gone drop out with their clients (workers and async_to_sync make short-lived loops).
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, object] = weakref.WeakKeyDictionary()
        self._down_until = 0.0

    def _client(self):
        import redis.asyncio as redis

        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = redis.Redis.from_url(self.url, socket_timeout=2, socket_connect_timeout=2)
            self._clients[loop] = client
        return client

    async def hit(self, key: str, limit: int, window_s: float = 60) -> Decision:
        import redis.exceptions

        if time.monotonic() < self._down_until:
            return await self.fallback.hit(key, limit, window_s)
        try:
            allowed, count, retry_us = await self._client().eval(
                _SLIDING_WINDOW, 1, f"agentdeck:rl:{key}", int(window_s * 1_000_000), limit, uuid.uuid4().hex)
        except (redis.exceptions.RedisError, OSError) as exc:
            # Not only silence: a Redis that answers with an error (READONLY after a failover
            # demoted it, MISCONF when it cannot save, a script refused) is as unusable, and
            # its error reached callers as a 500 and failed whole runs.
            self._down_until = time.monotonic() + REDIS_RETRY_AFTER_S
            log.warning("rate limits: Redis is not usable (%s: %s); using database counters for %.0fs",
                        type(exc).__name__, exc, REDIS_RETRY_AFTER_S)
            return await self.fallback.hit(key, limit, window_s)
        return Decision(bool(allowed), int(count), max(0.0, int(retry_us) / 1_000_000))


_limiter: DatabaseLimiter | RedisLimiter | None = None


def get_limiter() -> DatabaseLimiter | RedisLimiter:
    global _limiter
    if _limiter is None:
        _limiter = RedisLimiter(settings.REDIS_URL) if settings.REDIS_URL else DatabaseLimiter()
    return _limiter

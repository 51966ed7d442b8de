"""A thread that used the database and ended without closing its connection kept its pool slot
for good: four such threads starved a process of `DB_POOL_MAX=4`, and every later query waited
`DB_POOL_TIMEOUT_S` and failed (found by the PostgreSQL test pass, where a test's thread did it
and every test after it failed). The connection now goes back to the pool when its thread ends
(`config/postgresql/base.py: _GiveBack`). PostgreSQL's pool only."""

from __future__ import annotations

import os
import threading

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db(transaction=True)


def _pooled():
    if connection.vendor != "postgresql" or not connection.settings_dict["OPTIONS"].get("pool"):
        pytest.skip("PostgreSQL's connection pool only")
    return connection.pool


def _in_a_thread(work) -> None:
    errors: list[BaseException] = []

    def body() -> None:
        try:
            work()
        except BaseException as exc:  # (reported below)
            errors.append(exc)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join(60)
    assert not thread.is_alive() and not errors, errors


def _query() -> None:
    from django.db import connection as mine

    with mine.cursor() as cursor:  # and the thread ends without closing it
        cursor.execute("SELECT 1")


def _query_in_a_transaction() -> None:
    from django.db import connection as mine

    mine.set_autocommit(False)
    with mine.cursor() as cursor:
        cursor.execute("SELECT 1")


def test_threads_that_end_holding_a_pooled_connection_give_it_back(settings):
    pool = _pooled()
    pool.timeout = 5.0  # (without the fix, the fifth thread waited this long and failed)
    try:
        for work in [_query, _query_in_a_transaction] * (settings.DB_POOL_MAX + 1):
            _in_a_thread(work)
        stats = pool.get_stats()
        held = stats["pool_size"] - stats["pool_available"]
        assert held <= (1 if connection.connection is not None else 0), stats
    finally:
        pool.timeout = settings.DB_POOL_TIMEOUT_S


def test_a_connection_handed_back_the_usual_way_is_not_handed_back_again(settings):
    pool = _pooled()

    def closes() -> None:
        from django.db import connection as mine

        _query()
        mine.close()

    for _ in range(settings.DB_POOL_MAX + 1):
        _in_a_thread(closes)
    stats = pool.get_stats()
    assert stats["pool_size"] <= settings.DB_POOL_MAX and stats.get("returns_bad", 0) == 0, stats


def test_a_second_connection_object_in_one_thread_leaves_the_firsts_connection_alone():
    """While an event loop runs in a thread (Playwright's sync API, `asyncio.run`), Django gives
    each async context its own connection object: the second one's connect handed the first
    one's live connection back to the pool while it still used it (found by a review)."""
    import asyncio

    from django.db import connections

    pool = _pooled()
    first = connections["default"]
    with first.cursor() as cursor:
        cursor.execute("SELECT 1")
    mine = first.connection

    async def another_context() -> None:
        second = connections["default"]
        assert second is not first  # (what makes this case: one thread, two connection objects)
        with second.cursor() as cursor:
            cursor.execute("SELECT 1")
        second.close()

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        asyncio.run(another_context())
    finally:
        if previous is None:
            del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous
    assert first.connection is mine
    assert all(idle is not mine for idle in list(pool._pool)), "the first object's live connection is idle in the pool"

"""The database limiter locked each key's header row in the order the batch held the hits: two
processes whose batches held the same two keys in opposite orders deadlocked on PostgreSQL,
and the deadlock failed every hit of the aborted batch (an API request answered 503, a tool
call failed) instead of counting it (found by a review: 36 of 60 batches). A batch now locks
its keys in sorted order first.

PostgreSQL only (SQLite has one writer). Each thread here plays one process's gateway writer:
`_count_hits` in one transaction on its own connection, as `BatchWriter._flush` runs it."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from mcpgateway.ratelimit import _count_hits

pytestmark = pytest.mark.django_db(transaction=True)


def test_batches_with_the_same_keys_in_opposite_orders_do_not_fail(db):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def writer(keys: list[str], rounds: int) -> None:
        from django.db import connection as mine
        try:
            for _ in range(rounds):
                barrier.wait(timeout=30)
                try:
                    with transaction.atomic():
                        _count_hits([(key, 1_000_000, 60.0) for key in keys])
                except Exception as exc:  # what BatchWriter hands every caller of the batch
                    errors.append(exc)
        finally:
            mine.close()

    # Two keys per batch, e.g. one request's team limit and another's key limit.
    first = threading.Thread(target=writer, args=(["req:team:1", "req:key:7"], 60))
    second = threading.Thread(target=writer, args=(["req:key:7", "req:team:1"], 60))
    first.start(), second.start()
    first.join(), second.join()
    assert not errors, f"{len(errors)} batches failed: {type(errors[0]).__name__}: {errors[0]}"

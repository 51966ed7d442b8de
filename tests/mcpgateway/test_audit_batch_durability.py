"""Deferred (/mcp) audit rows are never dropped: a row the database refuses is isolated and
written with a note instead of taking its batch with it, and a database that fails for a
while delays rows without losing any.

Real database throughout (SQLite by default, PostgreSQL with DATABASE_URL): the refusals are
the database's own (a reference to a grant that does not exist, NUL in jsonb on PostgreSQL),
and the outage is the audit table really gone for two seconds."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from django.db import connection
from django.utils import timezone

from config.sql_rows import insert_rows
from mcpgateway.audit_batch import AuditBatchWriter
from mcpgateway.dispatch import NUL_MARK, _finish_audit, _insert_audit
from mcpgateway.models import AuditEntry, CallStatus, PrincipalKind

pytestmark = pytest.mark.django_db(transaction=True)

MISSING_GRANT = 987_654_321


def _row(team_id: int, i: int, **over) -> dict:
    row = {
        "team_id": team_id, "principal_kind": PrincipalKind.API_KEY, "agent_name": "", "api_key_id": 7,
        "user_id": None, "run_id": None, "step_key": "", "call_id": f"c{team_id}-{i}", "server_name": "echo",
        "tool_name": "echo", "arguments": {"text": f"hello {i}"}, "result": {"content": str(i)},
        "status": CallStatus.OK, "error": "", "latency_ms": 1.0, "grant_id": None, "created_at": timezone.now(),
        "idempotency_key": "", "dispatch_id": "",
    }
    return {**row, **over}


def _writer(**kw) -> AuditBatchWriter:
    return AuditBatchWriter({"audit": _insert_audit, "audit_end": _finish_audit},
                            **{"flush_ms": 100_000, "max_rows": 200, **kw})


def test_a_refused_row_is_written_with_a_note_and_the_rest_of_its_batch_is_kept():
    started = _row(2, 0, status=CallStatus.STARTED, result=None, dispatch_id=uuid.uuid4().hex)
    _insert_audit([started])
    writer = _writer()
    for i in range(1, 40):
        writer.enqueue("audit", _row(1 + i % 2, i))
    # A reference the database refuses (the grant was deleted meanwhile): the whole batch fails.
    writer.enqueue("audit", _row(1, 100, grant_id=MISSING_GRANT, arguments={"secret-ish": "kept out"}))
    # NUL in arguments, result, error and a key (PostgreSQL refuses it in text and jsonb).
    writer.enqueue("audit", _row(2, 101, arguments={"a\x00b": "x\x00y"}, result={"content": "\x00"},
                                 error="bad\x00byte", status=CallStatus.ERROR))
    writer.enqueue("audit_end", {"dispatch_id": started["dispatch_id"], "status": CallStatus.OK,
                                 "error": "", "result": {"content": "done\x00"}, "latency_ms": 2.0})
    assert writer.flush(timeout=60)
    writer.stop()

    assert writer.lost() == 0 and writer.failures >= 1  # the batch did fail, and nothing was lost
    assert AuditEntry.objects.count() == 1 + 39 + 2
    assert {r.call_id for r in AuditEntry.objects.filter(team_id=1)} >= {f"c1-{i}" for i in range(2, 40, 2)}
    assert AuditEntry.objects.filter(team_id=2).count() == 1 + 20 + 1
    refused = AuditEntry.objects.get(call_id="c1-100")
    assert refused.status == CallStatus.OK and refused.grant_id is None
    assert "refused by the database" in refused.arguments["audit_note"]
    assert refused.arguments["grant_id"] == MISSING_GRANT and refused.result is None
    nul = AuditEntry.objects.get(call_id="c2-101")
    assert nul.arguments == {f"a{NUL_MARK}b": f"x{NUL_MARK}y"} and nul.result == {"content": NUL_MARK}
    assert nul.error == f"bad{NUL_MARK}byte"
    done = AuditEntry.objects.get(dispatch_id=started["dispatch_id"])
    assert (done.status, done.result) == (CallStatus.OK, {"content": f"done{NUL_MARK}"})


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="SQLite stores NUL; PostgreSQL refuses it")
def test_a_row_with_nul_refused_by_postgresql_is_isolated_and_noted():
    """Even written raw (not through the audit writers' NUL escaping), a NUL row costs only itself."""
    writer = AuditBatchWriter({"audit": lambda rows: insert_rows(AuditEntry, rows)}, flush_ms=100_000, max_rows=200)
    for i in range(20):
        writer.enqueue("audit", _row(1 + i % 2, i, arguments={"text": "nul\x00here"} if i == 7 else {"i": i}))
    assert writer.flush(timeout=60)
    writer.stop()

    assert writer.lost() == 0 and writer.failures >= 1
    assert AuditEntry.objects.count() == 20
    poison = AuditEntry.objects.get(call_id="c2-7")
    assert "refused by the database" in poison.arguments["audit_note"]
    assert sorted(r.arguments["i"] for r in AuditEntry.objects.exclude(call_id="c2-7")) == [i for i in range(20) if i != 7]


def test_a_row_too_deeply_nested_to_store_is_noted_and_holds_up_no_other_row():
    """/mcp accepts arguments nested some 900 levels (`json.loads` does); redacting and
    storing them in the writer thread recurses deeper and raises `RecursionError`. That is the
    row's own fault: it is written with a note, the rows behind it are not held up."""
    deep: dict = {"leaf": 1}
    for _ in range(950):
        deep = {"a": deep}
    writer = _writer(flush_ms=10)
    writer.enqueue("audit", _row(1, 0))
    writer.enqueue("audit", _row(1, 1, arguments={"x": deep}))
    writer.enqueue("audit", _row(1, 2))
    assert writer.flush(timeout=20), f"{writer.pending()} rows still queued"
    writer.stop()
    assert writer.lost() == 0
    assert sorted(AuditEntry.objects.values_list("call_id", flat=True)) == ["c1-0", "c1-1", "c1-2"]
    noted = AuditEntry.objects.get(call_id="c1-1")
    assert "RecursionError" in noted.arguments["audit_note"]
    writer = _writer(flush_ms=10)  # a later row goes straight through
    writer.enqueue("audit", _row(1, 3))
    assert writer.flush(timeout=20)
    writer.stop()
    assert AuditEntry.objects.filter(call_id="c1-3").exists()


def test_a_connection_closed_under_the_writer_is_retried_not_blamed_on_the_rows():
    """The driver's connection closed under a batch (psycopg's InterfaceError is not a
    DatabaseError): the rows are written as they are once the connection is back — not
    with a note, not lost."""
    from django.db import connection as writer_connection

    closed = []

    def flaky(rows):
        if not closed:
            closed.append(True)
            writer_connection.ensure_connection()
            writer_connection.connection.close()  # the raw connection, under Django's feet
        _insert_audit(rows)

    writer = AuditBatchWriter({"audit": flaky, "audit_end": _finish_audit}, flush_ms=10, max_rows=200)
    for i in range(5):
        writer.enqueue("audit", _row(1, i))
    assert writer.flush(timeout=30), f"{writer.pending()} rows still queued"
    writer.stop()
    assert writer.lost() == 0 and writer.failures >= 1
    assert sorted(r.arguments["text"] for r in AuditEntry.objects.all()) == [f"hello {i}" for i in range(5)]


def test_only_the_rows_own_failures_are_isolated_every_other_is_retried():
    from django.db import DatabaseError, DataError, IntegrityError, InterfaceError, OperationalError

    from mcpgateway.audit_batch import row_error

    for theirs in (DataError("x"), IntegrityError("x"), RecursionError(), ValueError(), TypeError(), KeyError("k"),
                   UnicodeEncodeError("utf-8", "\udc80", 0, 1, "surrogates not allowed")):
        assert row_error(theirs), theirs
    # psycopg's connection-state errors arrive as InterfaceError, which is not a DatabaseError
    for not_theirs in (InterfaceError("connection already closed"), OperationalError("x"), DatabaseError("x"),
                       ConnectionResetError(), RuntimeError("unforeseen"), MemoryError()):
        assert not row_error(not_theirs), not_theirs


def test_a_database_outage_delays_rows_but_loses_none():
    table = connection.ops.quote_name(AuditEntry._meta.db_table)
    away = connection.ops.quote_name(AuditEntry._meta.db_table + "_away")
    writer = _writer(flush_ms=10, max_rows=10, max_queued=30)
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} RENAME TO {away}")
    try:
        for i in range(25):
            writer.enqueue("audit", _row(1, i))
        time.sleep(1.0)  # many tries fail meanwhile (the old writer dropped the batch after 0.6 s)
        assert writer.failures >= 2 and writer.pending() == 25
        assert not writer.flush(timeout=0.3)  # reports that the rows are not committed yet
        # Bounded: past max_queued a caller is refused (and writes synchronously instead).
        assert [writer.offer("audit", _row(1, 100 + i)) for i in range(6)] == [True] * 5 + [False]
        time.sleep(1.0)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {away} RENAME TO {table}")
    assert writer.flush(timeout=60)
    writer.stop()
    assert writer.lost() == 0 and writer.pending() == 0
    assert sorted(int(r.call_id.split("-")[1]) for r in AuditEntry.objects.all()) == [*range(25), *range(100, 105)]


def test_enqueue_waits_for_room_instead_of_dropping():
    table = connection.ops.quote_name(AuditEntry._meta.db_table)
    away = connection.ops.quote_name(AuditEntry._meta.db_table + "_away")
    writer = _writer(flush_ms=10, max_rows=2, max_queued=4)
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} RENAME TO {away}")
    try:
        for i in range(4):
            writer.enqueue("audit", _row(1, i))
        waiter = threading.Thread(target=writer.enqueue, args=("audit", _row(1, 4)))
        waiter.start()
        waiter.join(1.0)
        assert waiter.is_alive()  # the queue is full: the caller waits
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {away} RENAME TO {table}")
    waiter.join(30)
    assert not waiter.is_alive()
    assert writer.flush(timeout=60)
    writer.stop()
    assert AuditEntry.objects.count() == 5

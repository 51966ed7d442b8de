"""The suite's flush on PostgreSQL (tests/conftest.py, `_deleting_flush`): what a transactional
test leaves is deleted table by table, foreign keys and all, and nothing is left behind."""

from __future__ import annotations

import pytest
from django.core.management.color import no_style
from django.db import connection

from orchestrator.models import Run, RunEvent
from tests.conftest import execute, pipeline, scripted, start

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the SQLite flush is Django's own DELETEs"),
]


def test_it_empties_every_table_that_rows_with_foreign_keys_were_written_to(team):
    scripted(team, "writer", {"text": "done"})
    run = execute(start(pipeline(team, {"steps": [{"kind": "agent", "id": "w", "agent": "writer", "prompt": "go"}]})))
    assert run.status == "succeeded" and RunEvent.objects.filter(run=run).exists() and Run.objects.exists()
    tables = connection.introspection.django_table_names(only_existing=True, include_views=False)
    statements = connection.ops.sql_flush(no_style(), tables, allow_cascade=True)
    assert statements[0] == "SET CONSTRAINTS ALL DEFERRED;" and statements[1].startswith("LOCK TABLE ")
    assert all(s.startswith("DELETE FROM ") for s in statements[2:])

    connection.ops.execute_sql_flush(statements)

    with connection.cursor() as cursor:
        left = {}
        for table in tables:
            cursor.execute(f"SELECT count(*) FROM {connection.ops.quote_name(table)}")
            left[table] = cursor.fetchone()[0]
    assert {table: n for table, n in left.items() if n} == {}
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND NOT condeferrable")
        assert cursor.fetchone()[0] == 0  # what lets the DELETEs run in any order


def test_a_write_in_flight_from_another_connection_is_waited_for_and_deleted(team):
    """As TRUNCATE did: a row another connection is still writing commits before the DELETEs
    (the flush waits on its lock) and goes with the rest, instead of surviving into the next test."""
    import threading
    import time

    import psycopg

    settings_dict = connection.settings_dict
    writer = psycopg.connect(host=settings_dict["HOST"], port=settings_dict["PORT"], user=settings_dict["USER"],
                             dbname=settings_dict["NAME"])
    try:
        writer.execute("INSERT INTO auth_group (name) VALUES ('written mid-flush')")  # its transaction stays open
        tables = connection.introspection.django_table_names(only_existing=True, include_views=False)
        flushed = threading.Event()

        def flush() -> None:
            from django.db import connections

            try:
                connections["default"].ops.execute_sql_flush(connections["default"].ops.sql_flush(no_style(), tables))
            finally:
                connections.close_all()
                flushed.set()

        flusher = threading.Thread(target=flush)
        flusher.start()
        time.sleep(1)
        assert not flushed.is_set()  # waiting for the writer's transaction
        writer.commit()
        flusher.join(30)
        assert flushed.is_set()
        assert writer.execute("SELECT count(*) FROM auth_group").fetchone()[0] == 0
    finally:
        writer.close()

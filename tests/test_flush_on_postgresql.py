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
    assert statements[0] == "SET CONSTRAINTS ALL DEFERRED;" and all(s.startswith("DELETE FROM ") for s in statements[1:])

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

"""Migration 0016: the single-column indexes of four foreign keys are gone (their column leads
a unique constraint or a composite index, which still serves every lookup by it), the
covering ones stay, and going back to 0015 puts the dropped ones back. SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import connection

pytestmark = pytest.mark.django_db(transaction=True)

COVERED = {  # table: (the column that lost its own index, the columns of what covers it)
    "orchestrator_steprun": ("run_id", ["run_id", "key"]),
    "orchestrator_ledgerentry": ("run_id", ["run_id", "step_key", "attempt", "index"]),
    "orchestrator_runevent": ("run_id", ["run_id", "seq"]),
    "orchestrator_usagerecord": ("team_id", ["team_id", "created_at"]),
}


def _indexes(table: str) -> list[list[str]]:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    return [info["columns"] for info in constraints.values() if (info["index"] or info["unique"]) and not info["primary_key"]]


def test_covered_indexes_are_dropped_and_come_back_on_reversal() -> None:
    for table, (column, cover) in COVERED.items():
        assert [column] not in _indexes(table), table
        assert cover in _indexes(table), table
    try:
        call_command("migrate", "orchestrator", "0015", verbosity=0)
        for table, (column, cover) in COVERED.items():
            assert [column] in _indexes(table), table
            assert cover in _indexes(table), table
    finally:
        call_command("migrate", verbosity=0)
    for table, (column, _) in COVERED.items():
        assert [column] not in _indexes(table), table

"""The store's plain-SQL row writes (`config/sql_rows.py`): rows written inside
`one_round_trip` are the rows the same writes make one by one, on PostgreSQL they reach the
server as one query, and a block that raises sends nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from config.sql_rows import insert_rows, one_round_trip, select_rows, update_row
from orchestrator.models import RunEvent, StepRun, UsageRecord
from tests.conftest import pipeline, scripted, start

pytestmark = pytest.mark.django_db(transaction=True)

MOMENT = datetime(2026, 12, 3, 8, 30, 15, 123456, tzinfo=UTC)


def _writes(run_id: int, team_id: int, suffix: str) -> None:
    """Steps, usage and events of every awkward kind of value: JSON with quotes and percent
    signs, unicode, decimals, datetimes, NULLs."""
    insert_rows(StepRun, [{"run_id": run_id, "key": f"s{i}{suffix}", "step_id": f"s{i}", "kind": "agent",
                           "status": "running", "attempt": 1, "agent_name": "w", "input": {"prompt": "it's 100% \"x\""},
                           "output": None, "error": "", "input_tokens": 0, "output_tokens": 0, "tool_calls": 0,
                           "tool_errors": 0, "tool_recoveries": 0, "started_at": MOMENT, "finished_at": None}
                          for i in range(3)])
    update_row(StepRun, {"status": "succeeded", "output": ["é", {"n": 1.5}, None], "finished_at": MOMENT},
               {"run_id": run_id, "key": f"s1{suffix}"})
    insert_rows(UsageRecord, [{"team_id": team_id, "run_id": run_id, "step_key": f"s1{suffix}", "agent_id": None,
                               "provider": "scripted", "model": "scripted-1", "input_tokens": 7, "output_tokens": 3,
                               "cost_usd": Decimal("0.000123"), "created_at": MOMENT}])
    base = RunEvent.objects.filter(run_id=run_id).count()
    insert_rows(RunEvent, [{"run_id": run_id, "seq": base + i + 1, "type": "step.started", "step_key": f"s{i}{suffix}",
                            "data": {"text": "a;b -- c %s %(x)s 'q'"}, "created_at": MOMENT, "prev_hash": "", "hash": f"h{i}"}
                           for i in range(4)])


def _rows(run_id: int, suffix: str) -> list:
    steps = list(StepRun.objects.filter(run_id=run_id, key__endswith=suffix).order_by("key").values_list(
        "key", "status", "input", "output", "started_at", "finished_at"))
    usage = list(UsageRecord.objects.filter(run_id=run_id, step_key__endswith=suffix).values_list(
        "input_tokens", "output_tokens", "cost_usd", "created_at"))
    events = list(RunEvent.objects.filter(run_id=run_id, step_key__endswith=suffix).order_by("seq").values_list(
        "type", "data", "created_at"))
    return [[(k[: -len(suffix)], *rest) for k, *rest in steps], usage, events]


@pytest.fixture
def run(team):
    scripted(team, "w", {"text": "ok"})
    return start(pipeline(team, {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "go"}]}))


def test_writes_gathered_in_one_round_trip_are_the_writes_made_one_by_one(run):
    with transaction.atomic():
        _writes(run.pk, run.team_id, "-alone")
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        with one_round_trip():
            _writes(run.pk, run.team_id, "-together")
            held = not StepRun.objects.filter(run_id=run.pk, key="s0-together").exists()

    assert _rows(run.pk, "-together") == _rows(run.pk, "-alone")
    writes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith(("INSERT", "UPDATE"))]
    if connection.vendor == "postgresql":
        assert held, "the writes are sent on leaving the block"
        # The event count read inside went at once (its answer was needed); the writes went as one query.
        assert len(writes) == 1 and writes[0].count("INSERT INTO") == 3 and writes[0].count("UPDATE") == 1, writes
    else:
        assert not held, "SQLite has no round trips to save: the writes run as they come"


def test_a_block_that_raises_sends_none_of_its_writes(run):
    with pytest.raises(RuntimeError), transaction.atomic(), one_round_trip():
        insert_rows(RunEvent, [{"run_id": run.pk, "seq": 999, "type": "x", "step_key": "", "data": {},
                                "created_at": MOMENT, "prev_hash": "", "hash": "h"}])
        raise RuntimeError("the commit's work failed")

    assert not RunEvent.objects.filter(run_id=run.pk, seq=999).exists()


def test_a_failing_statement_fails_the_block_as_a_database_error(run):
    from django.db import IntegrityError

    row = {"run_id": run.pk, "seq": 500, "type": "x", "step_key": "", "data": {}, "created_at": MOMENT,
           "prev_hash": "", "hash": "h"}
    with pytest.raises(IntegrityError), transaction.atomic(), one_round_trip():
        insert_rows(RunEvent, [row, {**row, "hash": "again"}])  # the same (run, seq) twice

    assert not RunEvent.objects.filter(run_id=run.pk, seq=500).exists()


def test_select_rows_filters_by_equality_and_inequality(run):
    from orchestrator.models import BudgetReservation, Limit

    limit = Limit.objects.create(team_id=run.team_id, scope="team", kind="tokens_per_day", value=Decimal(10))
    for owner in ("me", "me", "other"):
        BudgetReservation.objects.create(run=run, lease_owner=owner, limit=limit, window=1, amount=5)

    assert len(select_rows(BudgetReservation, ("id",), {"run_id": run.pk})) == 3
    assert len(select_rows(BudgetReservation, ("id",), {"run_id": run.pk}, {"lease_owner": "me"})) == 1
    assert select_rows(BudgetReservation, ("lease_owner", "amount"), {"run_id": run.pk, "lease_owner": "other"}) == [
        ("other", 5)]


def test_a_value_postgresql_refuses_fails_as_djangos_error(run):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite stores a NUL in text")
    from django.db import DataError

    with pytest.raises(DataError), transaction.atomic(), one_round_trip():
        update_row(StepRun, {"error": "a\x00b"}, {"run_id": run.pk, "key": "none"})


def test_rows_read_by_id_are_those_the_orm_reads_with_one_parameter_for_all_ids(run):
    from config.sql_rows import ids_in, select_rows_by_pk

    base = RunEvent.objects.filter(run_id=run.pk).count()
    insert_rows(RunEvent, [{"run_id": run.pk, "seq": base + i + 1, "type": "x", "step_key": "", "data": {},
                            "created_at": MOMENT, "prev_hash": "", "hash": f"h{i}"} for i in range(300)])
    ids = list(RunEvent.objects.filter(run_id=run.pk).values_list("pk", flat=True))

    with CaptureQueriesContext(connection) as queries:
        rows = select_rows_by_pk(RunEvent, ("seq", "type"), [*ids, 10**12])  # an id no row has: left out
    assert rows == {pk: {"seq": seq, "type": kind} for pk, seq, kind in RunEvent.objects.filter(
        run_id=run.pk).values_list("pk", "seq", "type")}
    assert select_rows_by_pk(RunEvent, ("seq",), []) == {}
    if connection.vendor == "postgresql":
        (query,) = queries
        assert "= ANY(" in query["sql"] and " IN (" not in query["sql"], "the ids go as one array literal"
    with pytest.raises(ValueError):
        ids_in("id", ["1) OR (1 = 1"])  # only integers reach the SQL
    assert ids_in("id", [])[0] in ("1 = 0", "id = ANY(%s::bigint[])")


def test_on_sqlite_the_rows_go_straight_to_the_driver_and_are_the_rows_djangos_cursor_writes(run, monkeypatch):
    """On SQLite the hot-path statements skip Django's cursor layers (`sql_rows._direct`); the
    rows are the ones Django's cursor writes, errors still come as Django's, and while queries
    are being logged (`CaptureQueriesContext`, DEBUG) Django's cursor is used, so they show."""
    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL's writes go through Django's cursor, gathered (above)")
    from django.db import IntegrityError
    from django.db.backends.sqlite3.base import SQLiteCursorWrapper

    from config.sql_rows import select_row
    from orchestrator.models import Run

    through_django: list[str] = []
    def tracing(original):
        def traced(cursor, query, *args, **kwargs):
            through_django.append(query)
            return original(cursor, query, *args, **kwargs)
        return traced

    for name in ("execute", "executemany"):
        monkeypatch.setattr(SQLiteCursorWrapper, name, tracing(getattr(SQLiteCursorWrapper, name)))

    def writes() -> list[str]:
        return [q for q in through_django if q.startswith(("INSERT", "UPDATE", 'SELECT "last_seq"'))]

    with transaction.atomic():
        _writes(run.pk, run.team_id, "-direct")
        head = select_row(Run, ("last_seq", "cancel_requested"), run.pk, for_update=True)
    assert writes() == [], writes()
    assert head == {"last_seq": Run.objects.get(pk=run.pk).last_seq, "cancel_requested": False}

    with transaction.atomic(), CaptureQueriesContext(connection) as logged:
        _writes(run.pk, run.team_id, "-wrapped")
        assert select_row(Run, ("last_seq", "cancel_requested"), run.pk) == head
    assert len(writes()) == 5 and len(
        [q for q in logged.captured_queries if "INSERT INTO" in q["sql"] or q["sql"].startswith("UPDATE")]) == 4
    assert _rows(run.pk, "-direct") == _rows(run.pk, "-wrapped")

    row = {"run_id": run.pk, "seq": 700, "type": "x", "step_key": "", "data": {}, "created_at": MOMENT,
           "prev_hash": "", "hash": "h"}
    through_django.clear()
    with pytest.raises(IntegrityError), transaction.atomic():
        insert_rows(RunEvent, [row, {**row, "hash": "again"}])  # the same (run, seq) twice, straight to the driver
    assert writes() == [] and not RunEvent.objects.filter(run_id=run.pk, seq=700).exists()

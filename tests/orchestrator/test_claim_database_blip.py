# Found by an outside review (2026-12-07, the async pool); failed before its fix.
"""A run whose claim meets a failing database is tried again shortly, not left queued.

The claim's database error used to leave `execute_run_task` as an exception: Celery
acknowledged the message as done and the run sat queued until beat's stuck-runs sweep (a
minute or more; in this test, with no beat, for ever). Real parts: a Celery worker process
(Redis broker) on the test database, whose write lock the test holds past the worker's busy
timeout (SQLite answers "database is locked", as PostgreSQL answers a restart with a broken
connection), then lets go."""

from __future__ import annotations

import sqlite3
import time

import pytest
from django.conf import settings
from django.db import connection

from orchestrator.models import Run
from tests.conftest import pipeline, scripted, start
from tests.orchestrator.test_celery import Workers, _submit, _wait, broker  # noqa: F401 - the broker fixture

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
BUSY_TIMEOUT_S = 10  # the worker's `PRAGMA busy_timeout` (config/settings.py)


@pytest.mark.skipif(connection.vendor != "sqlite", reason="holds SQLite's write lock; the PostgreSQL pass restarts nothing")
def test_a_run_whose_claim_met_a_locked_database_runs_once_it_is_free(team, broker, tmp_path):  # noqa: F811
    scripted(team, "w", {"text": "done"})
    run = start(pipeline(team, {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "go"}]}))
    workers = Workers(tmp_path, 1)
    log = tmp_path / "worker0.log"
    blocker = sqlite3.connect(str(settings.DATABASES["default"]["NAME"]), isolation_level=None, timeout=30)
    try:
        blocker.execute("BEGIN EXCLUSIVE")  # every writer waits, then gets "database is locked"
        try:
            _submit(broker, run)
            _wait(lambda: log.exists() and "database is locked" in log.read_text(), 60)
            # The batch claim failed; the claim of the run alone fails too, a busy timeout later.
            time.sleep(BUSY_TIMEOUT_S + 5)
        finally:
            blocker.execute("COMMIT")
        started = time.monotonic()
        _wait(lambda: Run.objects.get(pk=run.pk).is_finished, 45)
        waited = time.monotonic() - started
    finally:
        blocker.close()
        workers.stop()
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert waited < 35, f"the run finished {waited:.0f} s after the database was free"

"""Leases are written and judged by the database server's clock on PostgreSQL.

With each process's own clock, a live worker whose clock ran 25 s behind wrote leases that a
correct clock saw as expired: the stuck-runs sweep listed its run while it still executed it,
and another worker took it over and made its model call again (found by a review, with
libfaketime). Here the worker's clock is moved back inside this process (django's
`timezone.now`), which is what lease code reads. PostgreSQL only: SQLite is one host.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.utils import timezone

from orchestrator import lease_clock
from orchestrator.actions.runs import stuck_runs
from orchestrator.runners.claims import claim_one
from tests.conftest import pipeline, scripted, start

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: one SQLite host has one clock")
    lease_clock.forget()
    yield
    lease_clock.forget()


def test_a_worker_whose_clock_runs_behind_keeps_its_runs(team, settings, monkeypatch):
    settings.RUN_LEASE_S = 10
    scripted(team, "w", {"text": "done"})
    run = start(pipeline(team, {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "x"}]}))
    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() - dt.timedelta(seconds=25))  # the worker's clock
    assert claim_one(run.pk, "behind:1")
    monkeypatch.setattr(timezone, "now", real_now)  # a process with a correct clock sweeps
    lease_clock.forget()
    assert run.pk not in [r.pk for r in stuck_runs()], "a live worker's run is listed as stuck"
    run.refresh_from_db()
    assert run.lease_until > real_now() + dt.timedelta(seconds=5), run.lease_until


def test_a_jump_of_the_process_clock_is_measured_again_at_once(team, monkeypatch):
    """An offset measured before the process's clock jumped was off by all of the jump for up
    to 30 s: a test that moved the clock to midnight left every later lease hours in the past."""
    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() + dt.timedelta(hours=5))
    assert abs((lease_clock.now() - real_now()).total_seconds()) < 2  # the server's clock, not the shifted one
    monkeypatch.setattr(timezone, "now", real_now)
    assert abs((lease_clock.now() - real_now()).total_seconds()) < 2  # not 5 hours behind

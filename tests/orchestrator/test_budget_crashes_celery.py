"""A real Celery worker killed in the middle of a model call: the run finishes on another worker
and the budget counter equals the recorded usage exactly (the dead worker's room came back)."""

from __future__ import annotations

import os
import signal
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.utils import timezone

from orchestrator.models import BudgetCounter, BudgetReservation, Limit, Run, StepRun, UsageRecord
from tests.conftest import pipeline, scripted, start
from tests.orchestrator.test_celery import Workers, _wait

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
BROKER = "redis://127.0.0.1:6379/9"  # a database of its own: other Celery tests flush theirs


@pytest.fixture
def broker():
    import redis
    from celery import Celery

    try:
        redis.Redis.from_url(BROKER, socket_connect_timeout=1).flushdb()
    except redis.exceptions.ConnectionError:
        pytest.skip(f"no Redis at {BROKER}: the Celery tests need a broker")
    sender = Celery("agentdeck-budget-test-sender", broker=BROKER, set_as_current=False)
    yield sender
    sender.close()


def _recorded() -> int:
    totals = UsageRecord.objects.aggregate(i=Sum("input_tokens"), o=Sum("output_tokens"))
    return (totals["i"] or 0) + (totals["o"] or 0)


def test_it_keeps_the_counter_equal_to_recorded_usage_when_a_worker_dies_mid_call(team, broker, tmp_path):
    Limit.objects.create(team=team, scope="team", kind="tokens_per_day", value=Decimal(100_000))
    scripted(team, "quick", {"text": "first done"})
    scripted(team, "slow", {"text": "second done", "delay_ms": 4000})
    spec = {"steps": [{"kind": "agent", "id": "first", "agent": "quick", "prompt": "one"},
                      {"kind": "agent", "id": "second", "agent": "slow", "prompt": "two"}]}
    workers = Workers(tmp_path, 2, env={"CELERY_BROKER_URL": BROKER})
    try:
        run = start(pipeline(team, spec))
        broker.send_task("orchestrator.tasks.execute_run_task", args=[run.pk])
        # the second step's model call is in flight: its room is reserved, nothing recorded yet
        _wait(lambda: StepRun.objects.filter(run=run, key="second", status="running").exists()
              and BudgetReservation.objects.filter(run=run, settled=False).exists())
        owner = Run.objects.get(pk=run.pk).lease_owner
        victim = int(owner.split(":")[1])
        assert victim in [p.pid for p in workers.procs]
        os.kill(victim, signal.SIGKILL)
        assert BudgetReservation.objects.get(run=run).lease_owner == owner
        assert BudgetCounter.objects.get().used > _recorded(), "the dead worker's room is still held"

        _wait(lambda: Run.objects.get(pk=run.pk).lease_until < timezone.now(), 10)
        broker.send_task("orchestrator.tasks.requeue_stuck_runs_task")
        _wait(lambda: Run.objects.get(pk=run.pk).is_finished, 60)
    finally:
        workers.stop()
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert UsageRecord.objects.filter(run=run).count() == 2
    assert BudgetCounter.objects.get().used == _recorded() == run.input_tokens + run.output_tokens
    assert not BudgetReservation.objects.exists()

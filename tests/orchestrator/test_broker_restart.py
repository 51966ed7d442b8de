"""Redis, as the broker, restarted under a worker of the shipped kind (threads pool, many runs
per process) while a run is in flight, its message unacknowledged: the worker reconnects and
goes on taking runs, and the run in flight finishes.

kombu's channel close put the unacknowledged messages back through a connection that was
already torn down; the AttributeError killed Celery's consumer for good and the worker stayed
up taking nothing (an idle worker reconnected fine, so the solo-pool outage test missed it)."""

from __future__ import annotations

import time

import pytest

from orchestrator.models import Run
from tests.conftest import pipeline, scripted, start
from tests.fakes.redis_server import RedisServer
from tests.orchestrator.test_celery import _submit, _wait
from tests.orchestrator.test_worker_pool import _pool_worker, _stop

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_a_worker_keeps_taking_runs_after_redis_restarts_under_a_run_in_flight(team, tmp_path):
    from celery import Celery

    scripted(team, "fast", {"text": "ok"})
    scripted(team, "slow", {"text": "ok", "delay_ms": 12_000})
    fast = pipeline(team, {"steps": [{"kind": "agent", "id": "a", "agent": "fast", "prompt": "go"}]}, name="fast")
    slow = pipeline(team, {"steps": [{"kind": "agent", "id": "a", "agent": "slow", "prompt": "go"}]}, name="slow")
    in_flight, after = start(slow), start(fast)
    redis = RedisServer(tmp_path)
    redis.start()
    sender = Celery("restart-sender", broker=redis.url, set_as_current=False)
    worker = _pool_worker(tmp_path, "restart", CELERY_BROKER_URL=redis.url, AGENTDECK_RUNS_PER_WORKER="8")
    try:
        _submit(sender, in_flight)
        _wait(lambda: Run.objects.filter(pk=in_flight.pk, status="running").exists(), 60)
        redis.kill()  # its message is unacknowledged (acks_late) while the run executes
        time.sleep(3)
        redis.start()  # empty: no persistence
        time.sleep(4)  # the worker notices and reconnects
        sender.close()
        sender = Celery("restart-sender-2", broker=redis.url, set_as_current=False)
        _submit(sender, after)
        _wait(lambda: Run.objects.filter(pk=after.pk, status="succeeded").exists(), 45)
        _wait(lambda: Run.objects.filter(pk=in_flight.pk, status="succeeded").exists(), 60)
        assert worker.poll() is None
    finally:
        sender.close()
        _stop(worker)
        redis.kill()
    log = (tmp_path / "restart.log").read_text()
    assert "Unrecoverable error" not in log, log[-3000:]

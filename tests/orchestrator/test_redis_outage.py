"""Redis (broker, channel layer and counters at once) killed for ~20 s while runs execute on a
real Celery worker: every run succeeds once it is back, no step or tool call repeated; the API
keeps answering JSON meanwhile, /readyz answers quickly, and a run started during the outage
is created (201) and dispatched once the broker returns.

Redis runs without persistence, so it comes back empty: the queued messages are gone and the
runs they carried are requeued by beat's stuck-runs sweep (STUCK_QUEUED_S), while the run
started during the outage is published by the web process's redispatch loop.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from decimal import Decimal

import pytest
from django.conf import settings

from mcpgateway.actions.access import do_create_api_key
from orchestrator.models import Limit, Run, RunEvent, StepRun, UsageRecord
from tests.conftest import pipeline, scripted, serving
from tests.fakes.redis_server import RedisServer
from tests.orchestrator.test_celery import Workers

pytestmark = pytest.mark.django_db(transaction=True)
OUTAGE_S = 20
STEPS = ("fetch", "think", "write")


def _call(method: str, url: str, token: str | None = None, body: dict | None = None) -> tuple[int, str, bytes, float]:
    """(status, content type, body, seconds taken)."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None, method=method,
                                 headers=headers)
    started = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read(), time.monotonic() - started
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read(), time.monotonic() - started


def _wait(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.2)


@pytest.fixture
def outage_setup(team, owner, tmp_path):
    scripted(team, "rec", {"tool_calls": [{"name": "t__record", "arguments": {"text": "fetched"}}], "delay_ms": 300},
             {"text": "fetched", "delay_ms": 300})
    scripted(team, "slow", {"text": "done", "delay_ms": 1200})
    spec = {"steps": [{"kind": "agent", "id": "fetch", "agent": "rec", "prompt": "go"},
                      {"kind": "agent", "id": "think", "agent": "slow", "prompt": "think"},
                      {"kind": "agent", "id": "write", "agent": "slow", "prompt": "write"}]}
    pipe = pipeline(team, spec)
    key, token = do_create_api_key(team.pk, "limited", owner, scopes=["read", "run"])
    Limit.objects.create(team=team, scope="api_key", api_key_id=key.pk, kind="requests_per_minute", value=Decimal(100))
    return pipe, token


@pytest.mark.slow
def test_it_finishes_every_run_after_a_redis_outage(outage_setup, tmp_path):
    pipe, token = outage_setup
    redis = RedisServer(tmp_path)
    redis.start()
    env = {"REDIS_URL": redis.url, "CELERY_BROKER_URL": redis.url, "AGENTDECK_RUNNER": "celery",
           "GATEWAY_AUTOSTART": "false", "AGENTDECK_TOOLBOX": "tests.fakes.counting_tools.factory",
           "AGENTDECK_TEST_CALL_LOG": str(tmp_path / "calls.jsonl"), "METRICS_TOKEN": "tok-outage",
           "STUCK_QUEUED_S": "5", "STUCK_RUNS_EVERY_S": "2"}
    worker = beat = None
    try:
        with serving(env, startup_s=120) as base:
            worker = Workers(tmp_path, 1, env=env)
            beat = subprocess.Popen([sys.executable, "-m", "celery", "-A", "config", "beat", "-l", "warning",
                                     "-s", str(tmp_path / "beat-schedule")], cwd=settings.BASE_DIR, env=worker.env,
                                    stdout=open(tmp_path / "beat.log", "w"), stderr=subprocess.STDOUT)
            started = [_call("POST", f"{base}/api/v1/runs", token, {"pipeline": pipe.pk, "input": {}}) for _ in range(5)]
            assert [s[0] for s in started] == [201] * 5
            _wait(lambda: StepRun.objects.filter(status="running").exists(), 60)

            redis.kill()
            outage_began = time.monotonic()
            during = _call("POST", f"{base}/api/v1/runs", token, {"pipeline": pipe.pk, "input": {}})
            listed = _call("GET", f"{base}/api/v1/runs", token)
            ready = _call("GET", f"{base}/readyz", "tok-outage")
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - outage_began)))
            redis.start()

            _wait(lambda: Run.objects.filter(status="succeeded").count() == 6, 180)
    finally:
        if beat is not None:
            beat.terminate()
            beat.wait(timeout=15)
        if worker is not None:
            worker.stop()
        redis.kill()

    status, content_type, body, took = during
    assert status == 201 and content_type.startswith("application/json"), body
    assert took < 5, f"starting a run during the outage took {took:.1f} s"
    assert json.loads(body)["status"] == "queued"
    assert listed[0] == 200 and listed[1].startswith("application/json"), "a limited key gets JSON, not HTML"
    assert ready[0] == 503 and json.loads(ready[2])["redis"]["ok"] is False
    assert ready[3] < 2.0, f"/readyz took {ready[3]:.1f} s"

    runs = list(Run.objects.order_by("id"))
    assert [r.status for r in runs] == ["succeeded"] * 6, [(r.pk, r.status, r.error) for r in runs]
    for run in runs:
        assert StepRun.objects.filter(run=run).count() == len(STEPS)
        for step in STEPS:
            assert RunEvent.objects.filter(run=run, type="step.succeeded", step_key=step).count() == 1, (run.pk, step)
        # fetch: its tool-requesting turn and its final turn; think and write: one turn each
        assert UsageRecord.objects.filter(run=run).count() == 4, run.pk
        assert run.lease_owner == ""
    calls = (tmp_path / "calls.jsonl").read_text().splitlines()
    assert len(calls) == 6, "each run's tool call ran exactly once"


@pytest.fixture
def broker_down(settings, monkeypatch, tmp_path):
    """The project's Celery app pointed at a Redis that is not running yet (the test may start it)."""
    from config.celery import app

    redis = RedisServer(tmp_path)
    settings.RUNNER = "celery"
    monkeypatch.setattr(app.conf, "broker_url", redis.url)
    monkeypatch.setattr(app, "_pool", None)  # the connection pools are cached per app: use fresh ones
    monkeypatch.setattr(app.amqp, "_producer_pool", None)
    yield redis
    redis.kill()


def test_it_creates_a_queued_run_and_dispatches_it_when_the_broker_returns(outage_setup, broker_down):
    import redis as redis_client
    from django.test import Client

    from orchestrator.runners.celery import redispatcher

    pipe, token = outage_setup
    client = Client()
    assert client.get("/api/v1/runs", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200  # warm: imports, schemas
    started = time.monotonic()
    response = client.post("/api/v1/runs", {"pipeline": pipe.pk, "input": {}}, content_type="application/json",
                             HTTP_AUTHORIZATION=f"Bearer {token}")
    took = time.monotonic() - started
    assert response.status_code == 201 and response.json()["status"] == "queued"
    assert took < 5, f"starting a run with the broker down took {took:.1f} s"
    run_id = response.json()["id"]
    assert run_id in redispatcher.pending()

    broker_down.start()
    _wait(lambda: run_id not in redispatcher.pending(), 30)
    queued = redis_client.Redis.from_url(broker_down.url).lrange("celery", 0, -1)
    assert len(queued) == 1 and json.loads(queued[0])["headers"]["argsrepr"] == f"({run_id},)"

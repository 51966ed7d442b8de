"""The shipped shape (web + 2 workers + beat) stays within its documented PostgreSQL
connection budget under a burst of requests and runs, counted from `pg_stat_activity`.

Budget = web's DB_POOL_MAX + each worker process's DB_POOL_MAX + beat's DB_POOL_MAX
(config/settings.py); each process is named by PGAPPNAME so the count excludes this test's
own connections.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import psycopg
import pytest
from django.conf import settings
from django.db import connection

from mcpgateway.actions.access import do_create_api_key
from orchestrator.models import Run
from tests.conftest import pipeline, scripted, serving
from tests.fakes.redis_server import RedisServer
from tests.orchestrator.test_celery import Workers

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

WEB_POOL, WORKER_POOL, BEAT_POOL = 4, 4, 2
BUDGET = WEB_POOL + 2 * WORKER_POOL + BEAT_POOL  # 14
APPS = ("agentdeck-web", "agentdeck-worker0", "agentdeck-worker1", "agentdeck-beat")


class Sampler(threading.Thread):
    """Counts this shape's server connections to the test database every 50 ms."""

    def __init__(self, dsn: str, database: str):
        super().__init__(daemon=True)
        self.dsn, self.database = dsn, database
        self.peak = 0
        self.peak_by_app: dict[str, int] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.stopping.is_set():
                rows = conn.execute("SELECT application_name, count(*) FROM pg_stat_activity "
                                    "WHERE datname = %s AND application_name = ANY(%s) GROUP BY 1",
                                    [self.database, list(APPS)]).fetchall()
                total = sum(n for _, n in rows)
                if total > self.peak:
                    self.peak, self.peak_by_app = total, dict(rows)
                time.sleep(0.05)


def _request(method: str, url: str, token: str, body: dict | None = None) -> int:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _wait(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.2)


def test_it_stays_within_the_connection_budget_under_a_burst(team, owner, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("the connection budget is PostgreSQL's (run with DATABASE_URL=postgres://...)")
    db = settings.DATABASES["default"]
    redis = RedisServer(tmp_path)
    redis.start()
    scripted(team, "w", {"text": "one", "delay_ms": 300}, {"text": "two", "delay_ms": 300})
    pipe = pipeline(team, {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "go"},
                                     {"kind": "agent", "id": "b", "agent": "w", "prompt": "again"}]})
    token = do_create_api_key(team.pk, "burst", owner, scopes=["read", "run"])[1]
    common = {"REDIS_URL": redis.url, "CELERY_BROKER_URL": redis.url, "AGENTDECK_RUNNER": "celery",
              "GATEWAY_AUTOSTART": "false", "AGENTDECK_TOOLBOX": "tests.fakes.counting_tools.factory",
              "AGENTDECK_TEST_CALL_LOG": str(tmp_path / "calls.jsonl")}
    sampler = Sampler(f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/postgres", db["NAME"])
    sampler.start()
    workers: list[Workers] = []
    beat = None
    try:
        with serving({**common, "DB_POOL_MAX": str(WEB_POOL), "PGAPPNAME": APPS[0]}, startup_s=120) as base:
            for i in range(2):
                (tmp_path / f"w{i}").mkdir()
            workers += [Workers(tmp_path / f"w{i}", 1, env={**common, "DB_POOL_MAX": str(WORKER_POOL), "PGAPPNAME": APPS[1 + i]})
                       for i in range(2)]
            beat = subprocess.Popen([sys.executable, "-m", "celery", "-A", "config", "beat", "-l", "warning",
                                     "-s", str(tmp_path / "beat-schedule")], cwd=settings.BASE_DIR,
                                    env={**workers[0].env, "DB_POOL_MAX": str(BEAT_POOL), "PGAPPNAME": APPS[3]},
                                    stdout=open(tmp_path / "beat.log", "w"), stderr=subprocess.STDOUT)
            statuses: list[int] = []
            lock = threading.Lock()
            gate = threading.Barrier(70)

            def one(method: str, path: str, body: dict | None) -> None:
                gate.wait()
                status = _request(method, f"{base}/api/v1{path}", token, body)
                with lock:
                    statuses.append(status)

            jobs = [("GET", "/runs", None)] * 50 + [("POST", "/runs", {"pipeline": pipe.pk, "input": {}})] * 20
            threads = [threading.Thread(target=one, args=job) for job in jobs]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=120)
            created = statuses.count(201)
            _wait(lambda: Run.objects.filter(status="succeeded").count() == created, 120)
            time.sleep(1)  # one more sample after the runs ended
    finally:
        sampler.stopping.set()
        if beat is not None:
            beat.terminate()
            beat.wait(timeout=15)
        for w in workers:
            w.stop()
        redis.kill()
        sampler.join(timeout=5)
    print(f"peak: {sampler.peak} connections {sampler.peak_by_app}; budget {BUDGET}")
    assert 0 < sampler.peak <= BUDGET, f"{sampler.peak} connections at peak: {sampler.peak_by_app}"
    assert sorted(statuses) == [200] * 50 + [201] * 20
    assert Run.objects.filter(status="succeeded").count() == 20

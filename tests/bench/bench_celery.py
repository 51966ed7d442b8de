"""Celery benchmark (TARGETS.md): runs per minute with 2 workers against 1, with a fixed
simulated model latency (a scripted agent answering after 200 ms), measured in one run.

Needs Redis (broker); uses PostgreSQL when reachable (database `agentdeck_bench`, created if
missing), else a SQLite file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BROKER = "redis://127.0.0.1:6379/12"
RUNS = 60
LATENCY_MS = 200


def _database_env(tmp: Path) -> dict[str, str]:
    try:
        import psycopg

        with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True, connect_timeout=2) as conn:
            conn.execute("DROP DATABASE IF EXISTS agentdeck_bench WITH (FORCE)")
            conn.execute("CREATE DATABASE agentdeck_bench")
        return {"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/agentdeck_bench"}
    except Exception:
        return {"SQLITE_PATH": str(tmp / "bench.sqlite3")}


def main() -> int:
    import redis

    redis.Redis.from_url(BROKER).flushdb()
    tmp = Path(tempfile.mkdtemp(prefix="agentdeck-celery-bench-"))
    env = {**os.environ, **_database_env(tmp), "CELERY_BROKER_URL": BROKER, "AGENTDECK_RUNNER": "celery",
           "GATEWAY_AUTOSTART": "false"}
    env.pop("REDIS_URL", None)
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from orchestrator.actions import do_create_pipeline, do_create_team, do_start_run
    from orchestrator.models import Agent, Run

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user("bench")
    team = do_create_team("Bench", user)
    Agent.objects.create(team=team, name="slow", provider="scripted", model="scripted-1",
                         options={"script": {"replies": [{"text": "ok", "delay_ms": LATENCY_MS}]}})
    pipe = do_create_pipeline(team, "bench", {"steps": [{"kind": "agent", "id": "a", "agent": "slow", "prompt": "x"}]})

    def measure(workers: int) -> float:
        procs = [subprocess.Popen([sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo",
                                   "-n", f"bench{workers}-{i}@%h", "-l", "error"], cwd=ROOT, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(workers)]
        try:
            time.sleep(3)  # let the workers connect
            runs = [do_start_run(pipe.latest_version(), {}, user) for _ in range(RUNS)]
            started = time.perf_counter()
            ids = [r.pk for r in runs]
            while Run.objects.filter(pk__in=ids, status="succeeded").count() < RUNS:
                if time.perf_counter() - started > 300:
                    raise TimeoutError("runs did not finish")
                time.sleep(0.05)
            return RUNS / (time.perf_counter() - started) * 60
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                p.wait(timeout=30)

    one = measure(1)
    two = measure(2)
    print(f"celery: {RUNS} runs of one step with {LATENCY_MS} ms model latency ({'PostgreSQL' if 'DATABASE_URL' in env else 'SQLite'})")
    print(f"  1 worker : {one:7.1f} runs/minute (baseline)")
    print(f"  2 workers: {two:7.1f} runs/minute, ratio {two / one:.2f}x   (target >= 1.8x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

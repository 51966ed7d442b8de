"""Worker pool benchmark (TARGETS.md "runs in flight per worker process"): one Celery worker
process, as shipped (threads pool, AGENTDECK_RUNS_PER_WORKER=500), executes N = 500 runs of a
two-step pipeline whose scripted model answers after 5 s.

Reported per round, and the median over rounds:
- runs in flight at once in that one process (from the runs' `run.started` and last events:
  the largest number of runs started and not yet finished at any moment);
- RSS per waiting run: the worker's peak RSS during the round minus its RSS after a warm-up
  round, divided by the runs in flight;
- wall time (first task published -> last run finished) against the ideal (2 steps x 5 s);
- the worker's peak PostgreSQL connections (its psycopg pool's bound, DB_POOL_MAX).

Targets: >= 500 runs in flight, <= 1 MB per waiting run, wall <= 1.2x ideal.
Needs Redis (broker, db 7) and PostgreSQL at 127.0.0.1:5432 (database `agentdeck_bench_pool`,
created and dropped here). `BENCH_POOL_RUNS`, `BENCH_POOL_ROUNDS`, `BENCH_POOL_LATENCY_MS`
change the workload; `BENCH_POOL_BROKER` another broker (e.g. RabbitMQ,
`amqp://guest:guest@127.0.0.1:5672//`: its `celery` queue is purged first).
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BROKER = os.environ.get("BENCH_POOL_BROKER", "redis://127.0.0.1:6379/7")
ADMIN_DSN = "postgres://postgres@127.0.0.1:5432/postgres"
DB_NAME = "agentdeck_bench_pool"
RUNS = int(os.environ.get("BENCH_POOL_RUNS", "500"))
ROUNDS = int(os.environ.get("BENCH_POOL_ROUNDS", "2"))
LATENCY_MS = int(os.environ.get("BENCH_POOL_LATENCY_MS", "5000"))
STEPS = 2
APP_NAME = "agentdeck-bench-pool-worker"


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _commits() -> int:
    import psycopg

    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        return conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s", [DB_NAME]).fetchone()[0]


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Sampler(threading.Thread):
    """The worker's peak RSS and its peak number of PostgreSQL connections, every 100 ms."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_rss_kb = 0
        self.peak_connections = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        import psycopg

        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            while not self.stopping.is_set():
                self.peak_rss_kb = max(self.peak_rss_kb, _rss_kb(self.pid))
                count = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
                                     [DB_NAME, APP_NAME]).fetchone()[0]
                self.peak_connections = max(self.peak_connections, count)
                time.sleep(0.1)


def _spans(run_ids: list[int]) -> tuple[int, float, float, float]:
    """From the runs' persisted events (`run.started` to the last): the most runs started and not yet finished at one moment,
    how long after the first run started the last one started, and the median and longest
    duration of a run (first event to last)."""
    from django.db.models import Max, Min

    from orchestrator.models import RunEvent

    spans = list(RunEvent.objects.filter(run_id__in=run_ids).exclude(type="run.queued").values("run_id").annotate(
        first=Min("created_at"), last=Max("created_at")))
    edges = sorted([(s["first"], 1) for s in spans] + [(s["last"], -1) for s in spans], key=lambda e: (e[0], e[1]))
    current = peak = 0
    for _, delta in edges:
        current += delta
        peak = max(peak, current)
    firsts = sorted(s["first"] for s in spans)
    durations = [(s["last"] - s["first"]).total_seconds() for s in spans]
    return peak, (firsts[-1] - firsts[0]).total_seconds(), statistics.median(durations), max(durations)


def main() -> int:
    import psycopg
    import redis

    if BROKER.startswith("redis"):
        redis.Redis.from_url(BROKER).flushdb()
    with psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    tmp = Path(tempfile.mkdtemp(prefix="agentdeck-pool-bench-"))
    env = {**os.environ, "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB_NAME}", "CELERY_BROKER_URL": BROKER,
           "AGENTDECK_RUNNER": "celery", "GATEWAY_AUTOSTART": "false", "AGENTDECK_VAR_DIR": str(tmp)}
    env.pop("REDIS_URL", None)
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from celery import Celery
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from orchestrator.actions import do_create_pipeline, do_create_team, do_start_run
    from orchestrator.models import Agent, Run

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user("bench")
    team = do_create_team("Bench", user)
    spec = {"steps": [{"kind": "agent", "id": f"s{i}", "agent": "{agent}", "prompt": "x"} for i in range(STEPS)]}

    def pipeline(name: str, delay_ms: int):
        Agent.objects.create(team=team, name=name, provider="scripted", model="scripted-1",
                             options={"script": {"replies": [{"text": "ok", "delay_ms": delay_ms}]}})
        steps = [{**s, "agent": name} for s in spec["steps"]]
        return do_create_pipeline(team, name, {"steps": steps})

    slow, warm = pipeline("slow", LATENCY_MS), pipeline("warm", 0)
    sender = Celery("agentdeck-bench-sender", broker=BROKER, set_as_current=False)
    if not BROKER.startswith("redis"):
        with sender.connection_for_write() as conn:
            conn.default_channel.queue_declare("celery", durable=True, auto_delete=False)
            conn.default_channel.queue_purge("celery")

    def start_worker(round_no: int) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "celery", "-A", "config", "worker", "-n", f"pool{round_no}@%h",
                                 "-l", "error"], cwd=ROOT, env={**env, "PGAPPNAME": APP_NAME},
                                stdout=open(tmp / f"worker{round_no}.log", "w"), stderr=subprocess.STDOUT)

    def create(pipe, count: int) -> list[int]:
        return [do_start_run(pipe.latest_version(), {}, user, submit=False).pk for _ in range(count)]

    def execute(worker: subprocess.Popen, runs: list[int], timeout: float) -> tuple[float, int]:
        """Publish the runs' tasks and wait until all succeeded: (wall time, how many times this
        process looked, each one PostgreSQL transaction of its own)."""
        started = time.perf_counter()
        for run_id in runs:
            sender.send_task("orchestrator.tasks.execute_run_task", args=[run_id])
        looks = 0
        while Run.objects.filter(pk__in=runs, status="succeeded").count() < len(runs):
            looks += 1
            if time.perf_counter() - started > timeout:
                failed = Run.objects.filter(pk__in=runs).exclude(status="succeeded").values_list("status", flat=True)
                raise TimeoutError(f"runs did not finish: {sorted(set(failed))}; see {tmp}")
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited; see {tmp}")
            time.sleep(0.05)
        return time.perf_counter() - started, looks + 1

    results = []
    try:
        for round_no in range(ROUNDS):
            # A fresh worker each round, warmed up (imports, first connections, first pool threads)
            # before its RSS is taken as the baseline.
            worker = start_worker(round_no)
            try:
                execute(worker, create(warm, 20), 180)
                runs = create(slow, RUNS)  # created (and their transactions made) before counting
                time.sleep(1)
                base_kb = _rss_kb(worker.pid)
                sampler = Sampler(worker.pid)
                sampler.start()
                cpu, commits = _cpu_s(worker.pid), _commits()
                wall, looks = execute(worker, runs, 600)
                cpu = _cpu_s(worker.pid) - cpu
                time.sleep(1.5)  # backends report their transactions to pg_stat_database when idle
                commits = _commits() - commits - looks  # the worker's, not this process's looks
                sampler.stopping.set()
                sampler.join(timeout=5)
            finally:
                worker.send_signal(signal.SIGTERM)
                try:
                    worker.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    worker.kill()
            flight, start_spread, run_median, run_max = _spans(runs)
            claimed = sorted(Run.objects.filter(pk__in=runs).values_list("started_at", flat=True))
            claim_spread = (claimed[-1] - claimed[0]).total_seconds()
            per_run_kb = (sampler.peak_rss_kb - base_kb) / max(flight, 1)
            results.append((flight, per_run_kb, wall, base_kb, sampler.peak_rss_kb, sampler.peak_connections))
            print(f"  round {round_no + 1}: {flight} runs in flight, RSS {base_kb / 1024:.0f} -> "
                  f"{sampler.peak_rss_kb / 1024:.0f} MB ({per_run_kb:.0f} KB per waiting run), wall {wall:.2f} s, "
                  f"peak PostgreSQL connections {sampler.peak_connections}; runs claimed within {claim_spread:.2f} s, "
                  f"their first events committed within {start_spread:.2f} s, "
                  f"a run took {run_median:.2f} s (median), {run_max:.2f} s (longest); worker CPU {cpu:.1f} s "
                  f"({cpu / RUNS * 1000:.0f} ms per run), {commits / RUNS:.1f} PostgreSQL transactions per run (the worker's); "
                  f"load average {os.getloadavg()[0]:.1f}", flush=True)
    finally:
        sender.close()
        from django.db import connections

        connections.close_all()
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")

    ideal = STEPS * LATENCY_MS / 1000
    flight = statistics.median(r[0] for r in results)
    per_run = statistics.median(r[1] for r in results)
    wall = statistics.median(r[2] for r in results)
    conns = max(r[5] for r in results)
    print(f"worker pool: one worker process (threads pool, {settings.AGENTDECK_RUNS_PER_WORKER} runs per worker), "
          f"{RUNS} runs of {STEPS} steps, {LATENCY_MS} ms model latency, PostgreSQL, {BROKER.split(':', 1)[0]} broker; "
          f"median of {len(results)} rounds")
    print(f"  runs in flight at once : {flight:.0f}   (target >= 500)   spread {min(r[0] for r in results)}-{max(r[0] for r in results)}")
    print(f"  RSS per waiting run    : {per_run:.0f} KB = {per_run / 1024:.3f} MB   (target <= 1 MB)   "
          f"spread {min(r[1] for r in results):.0f}-{max(r[1] for r in results):.0f} KB")
    print(f"  wall / ideal           : {wall:.2f} s / {ideal:.1f} s = {wall / ideal:.3f}x   (target <= 1.2x: "
          f"{'met' if wall / ideal <= 1.2 else 'NOT met'})   "
          f"spread {min(r[2] for r in results) / ideal:.2f}-{max(r[2] for r in results) / ideal:.2f}x")
    print(f"  peak PostgreSQL connections of the worker: {conns} (DB_POOL_MAX {settings.DB_POOL_MAX})")
    print(f"  for orientation: a prefork worker with --concurrency=4 holds 4 runs: {RUNS} runs would take "
          f"~{RUNS / 4 * ideal:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

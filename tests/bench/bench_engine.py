"""Engine benchmarks (TARGETS.md) against the peer, LangGraph, in the same run.

Run with `make bench` (it installs the `bench` extra: LangGraph and its SQLite and
PostgreSQL checkpointers). The same workloads run on both, in alternating rounds, on
SQLite (WAL, synchronous=FULL on both sides: every commit fsyncs) and on PostgreSQL
(127.0.0.1:5432, a bench database created and dropped here; LangGraph's PostgresSaver
in the same database):

- linear: a pipeline of 10 agent steps, zero-latency model, runs one after another;
- loop: review → fix, 3 iterations (6 agent steps);
- concurrent: 16 linear runs at once in one process (the engine's group commit lets one
  fsync carry the steps of many runs);
- fan-out: 4 branches of 300 ms + join, wall time over the ideal 300 ms.

Both sides persist each step before the next starts (LangGraph: `durability="sync"`).
Figures are medians over the rounds with the spread (min-max); a ratio is Agentdeck /
LangGraph, taken per round. Each backend runs in its own process (`--backend`).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PG_SERVER = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
LINEAR_RUNS, LOOP_RUNS, CONCURRENT_RUNS, FAN_OUT_RUNS = 20, 10, 16, 3
TARGETS = {"sqlite": 0.5, "postgres": 0.7}


# --- one backend, in its own process ---------------------------------------------------------

def _setup_django(backend: str, tmp: Path) -> str:
    """Point Django at a fresh bench database; return LangGraph's target (path or URL)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    if backend == "postgres":
        import psycopg

        name = f"agentdeck_bench_{os.getpid()}"
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        os.environ["DATABASE_URL"] = f"{PG_SERVER}/{name}"
        target = os.environ["DATABASE_URL"]
    else:
        os.environ["SQLITE_PATH"] = str(tmp / "bench.sqlite3")
        os.environ.pop("DATABASE_URL", None)
        target = str(tmp / "langgraph.sqlite3")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return target


def _drop_database(backend: str) -> None:
    if backend != "postgres":
        return
    import psycopg
    from django.db import connections

    from config.db_writer import close_writer_connections

    close_writer_connections()
    connections.close_all()
    name = os.environ["DATABASE_URL"].rsplit("/", 1)[1]
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Ours:
    """The engine's side: real runs (claim, load, group-committed steps, events, ledger)."""

    def __init__(self) -> None:
        from django.contrib.auth import get_user_model

        from orchestrator.actions import do_create_pipeline, do_create_team
        from orchestrator.models import Agent

        self.user = get_user_model().objects.create_user("bench")
        team = do_create_team("Bench", self.user)
        fast = {"script": {"replies": [{"text": "ok"}]}}
        Agent.objects.create(team=team, name="fast", provider="scripted", model="scripted-1", options=fast)
        Agent.objects.create(team=team, name="reviewer", provider="scripted", model="scripted-1",
                             options={"script": {"replies": [{"text": "needs changes"}]}})
        Agent.objects.create(team=team, name="slow", provider="scripted", model="scripted-1",
                             options={"script": {"replies": [{"text": "view", "delay_ms": 300}]}})
        linear = {"steps": [{"kind": "agent", "id": f"s{i}", "agent": "fast", "prompt": f"step {i}"} for i in range(10)]}
        loop = {"steps": [{"kind": "loop", "id": "fixing", "max_iterations": 3, "on_max": "continue",
                           "until": {"ref": "steps.review.output", "op": "not_contains", "value": "needs changes"},
                           "body": [{"kind": "agent", "id": "fix", "agent": "fast", "prompt": "fix it"},
                                    {"kind": "agent", "id": "review", "agent": "reviewer", "prompt": "review it"}]}]}
        fan_out = {"steps": [{"kind": "parallel", "id": "fan",
                              "branches": [{"kind": "agent", "id": f"b{i}", "agent": "slow", "prompt": "x"} for i in range(4)],
                              "join": {"kind": "agent", "id": "j", "agent": "fast", "prompt": "y"}}]}
        self.pipelines = {name: do_create_pipeline(team, name, spec)
                          for name, spec in (("linear", linear), ("loop", loop), ("fan-out", fan_out))}
        self.transactions_per_step: dict[str, list[float]] = {"linear": [], "concurrent": []}

    def _runs(self, pipeline: str, count: int) -> list[int]:
        from orchestrator.actions import do_start_run

        version = self.pipelines[pipeline].latest_version()
        return [do_start_run(version, {}, self.user, submit=False).pk for _ in range(count)]

    def _execute(self, run_ids: list[int], concurrent: bool) -> list[float]:
        from mcpgateway.inprocess import InProcessToolbox
        from orchestrator.execution import execute_run

        async def one(run_id: int) -> float:
            started = time.perf_counter()
            outcome = await execute_run(run_id, toolbox=InProcessToolbox())
            assert outcome is not None and outcome.status == "succeeded", outcome
            return time.perf_counter() - started

        async def main() -> list[float]:
            if concurrent:
                return list(await asyncio.gather(*(one(r) for r in run_ids)))
            return [await one(r) for r in run_ids]

        return asyncio.run(main())

    def _per_step(self, pipeline: str, runs: int, steps: int, concurrent: bool = False) -> float:
        from config.db_writer import group_commit_stats

        run_ids = self._runs(pipeline, runs)
        before = group_commit_stats()[0]
        started = time.perf_counter()
        self._execute(run_ids, concurrent)
        elapsed = time.perf_counter() - started
        if pipeline == "linear":
            kind = "concurrent" if concurrent else "linear"
            self.transactions_per_step[kind].append((group_commit_stats()[0] - before) / (runs * steps))
        return elapsed / (runs * steps)

    def linear(self, runs: int) -> float:
        return self._per_step("linear", runs, 10)

    def loop(self, runs: int) -> float:
        return self._per_step("loop", runs, 6)

    def concurrent(self, runs: int) -> float:
        return self._per_step("linear", runs, 10, concurrent=True)

    def fan_out(self, runs: int) -> float:
        times = self._execute(self._runs("fan-out", runs), concurrent=False)
        return sorted(times)[len(times) // 2] / 0.3


def run_backend(backend: str) -> dict[str, Any]:
    """Alternate rounds of both sides on one backend; return every sample."""
    sys.path.insert(0, str(ROOT))
    tmp = Path(tempfile.mkdtemp(prefix="agentdeck-bench-"))
    target = _setup_django(backend, tmp)
    from tests.bench.bench_langgraph_peer import Peer

    try:
        ours, peer = Ours(), Peer(target)
        workloads = {"linear": LINEAR_RUNS, "loop": LOOP_RUNS, "concurrent": CONCURRENT_RUNS, "fan-out": FAN_OUT_RUNS}
        for name, runs in workloads.items():  # warm up imports, caches, connections
            getattr(ours, name.replace("-", "_"))(min(runs, 2))
            getattr(peer, name.replace("-", "_"))(min(runs, 2))
        for values in ours.transactions_per_step.values():
            values.clear()
        samples: dict[str, dict[str, list[float]]] = {name: {"ours": [], "peer": []} for name in workloads}
        for round_ in range(ROUNDS):
            sides = (("ours", ours), ("peer", peer)) if round_ % 2 == 0 else (("peer", peer), ("ours", ours))
            for name, runs in workloads.items():
                for side, impl in sides:
                    samples[name][side].append(getattr(impl, name.replace("-", "_"))(runs))
        return {"backend": backend, "samples": samples, "transactions_per_step": ours.transactions_per_step}
    finally:
        _drop_database(backend)


# --- the report ------------------------------------------------------------------------------

def _spread(values: list[float], scale: float = 1.0, fmt: str = "{:.3f}") -> str:
    return (fmt.format(statistics.median(values) * scale) + " [" + fmt.format(min(values) * scale) + "-"
            + fmt.format(max(values) * scale) + "]")


def report(result: dict[str, Any]) -> bool:
    backend, samples = result["backend"], result["samples"]
    target = TARGETS[backend]
    label = "SQLite WAL synchronous=FULL" if backend == "sqlite" else "PostgreSQL (synchronous_commit on)"
    print(f"engine vs LangGraph (durability=sync), {label}; median [min-max] over {ROUNDS} rounds")
    ok = True
    for name, unit in (("linear", "ms/step"), ("loop", "ms/step"), ("concurrent", "ms/step")):
        ours, peer = samples[name]["ours"], samples[name]["peer"]
        ratios = [o / p for o, p in zip(ours, peer, strict=True)]
        met = statistics.median(ratios) <= target
        ok = ok and (met or name != "linear")
        print(f"  {name:<10} Agentdeck {_spread(ours, 1000)} {unit}   LangGraph {_spread(peer, 1000)} {unit}   "
              f"ratio {_spread(ratios, fmt='{:.2f}')}x   (target <= {target}x: {'met' if met else 'NOT met'})")
    tps = result["transactions_per_step"]
    if tps["linear"]:
        print(f"  Agentdeck transactions per step: linear {_spread(tps['linear'], fmt='{:.2f}')}, "
              f"concurrent (group commit) {_spread(tps['concurrent'], fmt='{:.2f}')}")
    ours, peer = samples["fan-out"]["ours"], samples["fan-out"]["peer"]
    overhead_ours = statistics.median(ours) - 1
    overhead_peer = statistics.median(peer) - 1
    met = overhead_ours <= overhead_peer
    ok = ok and met
    print(f"  fan-out    4 x 300 ms + join: Agentdeck {_spread(ours, fmt='{:.3f}')}x ideal   "
          f"LangGraph {_spread(peer, fmt='{:.3f}')}x ideal   overhead {overhead_ours * 100:.1f}% vs {overhead_peer * 100:.1f}% "
          f"(target <= LangGraph's: {'met' if met else 'NOT met'})")
    return ok


def main() -> int:
    if "--backend" in sys.argv:
        backend = sys.argv[sys.argv.index("--backend") + 1]
        print(json.dumps(run_backend(backend)))
        return 0
    backends = os.environ.get("BENCH_BACKENDS", "sqlite,postgres").split(",")
    all_met = True
    for backend in backends:
        done = subprocess.run([sys.executable, __file__, "--backend", backend], capture_output=True, text=True,
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        if done.returncode != 0:
            print(f"engine bench on {backend} failed:\n{done.stderr[-3000:]}")
            all_met = False
            continue
        all_met = report(json.loads(done.stdout.strip().splitlines()[-1])) and all_met
    print("engine targets:", "met" if all_met else "NOT met")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())

"""Engine benchmarks (TARGETS.md): durable cost per step, and parallel branch overhead.

Run with `make bench`. Each figure is printed with its baseline measured in the same run:
per-step cost with persistence (SQLite file, WAL, synchronous=FULL: every commit fsyncs)
against the same engine with an in-memory store, and 4 parallel branches of 300 ms + join
against the ideal 300 ms.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _setup_django() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="agentdeck-bench-"))
    os.environ["SQLITE_PATH"] = str(tmp / "bench.sqlite3")
    os.environ.pop("DATABASE_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _spec(steps: int) -> dict:
    return {"steps": [{"kind": "agent", "id": f"s{i}", "agent": "fast", "prompt": f"step {i}"} for i in range(steps)]}


def bench_steps(steps: int = 200, repeats: int = 5) -> dict[str, float]:
    from asgiref.sync import async_to_sync
    from django.contrib.auth import get_user_model

    from mcpgateway.inprocess import InProcessToolbox
    from orchestrator.actions import do_create_pipeline, do_create_team, do_start_run
    from orchestrator.engine.executor import Engine
    from orchestrator.engine.ports import AgentConfig
    from orchestrator.engine.spec import parse_spec
    from orchestrator.engine.store import MemoryStore
    from orchestrator.execution import execute_run
    from orchestrator.model_door import ModelDoor
    from orchestrator.models import Agent

    user = get_user_model().objects.create_user("bench")
    team = do_create_team("Bench", user)
    script = {"script": {"replies": [{"text": "ok"}]}}
    Agent.objects.create(team=team, name="fast", provider="scripted", model="scripted-1", options=script)
    pipe = do_create_pipeline(team, "bench", _spec(steps))
    spec = parse_spec(_spec(steps))
    agents = {"fast": AgentConfig("fast", "scripted", "scripted-1", options=script)}

    def memory_run() -> float:
        engine = Engine(spec=spec, store=MemoryStore(), models=ModelDoor(limits=spec.limits, prices={}),
                        toolbox=InProcessToolbox(), agents=agents)
        started = time.perf_counter()
        asyncio.run(engine.run({}))
        return (time.perf_counter() - started) / steps * 1000

    def durable_run() -> float:
        run = do_start_run(pipe.latest_version(), {}, user, submit=False)
        started = time.perf_counter()
        outcome = async_to_sync(execute_run)(run.pk, toolbox=InProcessToolbox())
        elapsed = time.perf_counter() - started
        assert outcome is not None and outcome.status == "succeeded", outcome
        return elapsed / steps * 1000

    memory_run(), durable_run()  # warm up imports and caches
    memory = [memory_run() for _ in range(repeats)]
    durable = [durable_run() for _ in range(repeats)]
    return {"memory_ms": statistics.median(memory), "durable_ms": statistics.median(durable)}


def bench_parallel(repeats: int = 5) -> float:
    from asgiref.sync import async_to_sync
    from django.contrib.auth import get_user_model

    from mcpgateway.inprocess import InProcessToolbox
    from orchestrator.actions import do_create_pipeline, do_create_team, do_start_run
    from orchestrator.execution import execute_run
    from orchestrator.models import Agent

    user = get_user_model().objects.create_user("bench-par")
    team = do_create_team("Bench parallel", user)
    Agent.objects.create(team=team, name="slow", provider="scripted", model="scripted-1",
                         options={"script": {"replies": [{"text": "view", "delay_ms": 300}]}})
    Agent.objects.create(team=team, name="join", provider="scripted", model="scripted-1",
                         options={"script": {"replies": [{"text": "summary"}]}})
    spec = {"steps": [{"kind": "parallel", "id": "fan",
                       "branches": [{"kind": "agent", "id": f"b{i}", "agent": "slow", "prompt": "x"} for i in range(4)],
                       "join": {"kind": "agent", "id": "j", "agent": "join", "prompt": "y"}}]}
    pipe = do_create_pipeline(team, "par", spec)
    times = []
    for _ in range(repeats + 1):
        run = do_start_run(pipe.latest_version(), {}, user, submit=False)
        started = time.perf_counter()
        async_to_sync(execute_run)(run.pk, toolbox=InProcessToolbox())
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:])


def main() -> int:
    _setup_django()
    steps = bench_steps()
    parallel = bench_parallel()
    persist = steps["durable_ms"] - steps["memory_ms"]
    print("engine: sequential agent steps, zero-latency scripted model, SQLite WAL synchronous=FULL")
    print(f"  per step without persistence (baseline): {steps['memory_ms']:.3f} ms")
    print(f"  per step with persistence:               {steps['durable_ms']:.3f} ms   (target <= 1.0 ms)")
    print(f"  persistence cost per step:               {persist:.3f} ms   ratio durable/baseline {steps['durable_ms'] / steps['memory_ms']:.2f}x")
    print("engine: 4 parallel branches of 300 ms + join")
    print(f"  wall time {parallel * 1000:.1f} ms, ideal 300 ms, ratio {parallel / 0.3:.3f}x   (target <= 1.05x)")
    ok = steps["durable_ms"] <= 1.0 and parallel / 0.3 <= 1.05
    print("engine targets:", "met" if ok else "NOT met")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.exit(main())

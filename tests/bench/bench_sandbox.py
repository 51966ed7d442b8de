"""Sandbox execution latency of a small Python snippet, cold and warm (TARGETS.md: warm
p50 <= 150 ms, cold p50 <= 800 ms), against `docker run --rm` of an equally hardened
container from the same image, measured in the same run.

- baseline: `docker run --rm` (CLI) with the sandbox's limits, running `python3 -c`;
- cold: "execution" mode without a pool: create and start a container, run, pack the
  workspace, remove (the removal happens off the caller's path);
- warm: "execution" mode with its pool of started containers (the default), calls
  spaced so the pool refills, as a run's tool calls are;
- warm, session: "session" mode, the run's container already up: one exec.

Needs the engine and image of `make sandbox-engine`.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from mcpgateway.sandbox.config import SandboxConfig  # noqa: E402
from mcpgateway.sandbox.service import Sandbox  # noqa: E402

SNIPPET = "import json\nprint(json.dumps({'sum': sum(range(100))}))"
IMAGE = os.environ.get("AGENTDECK_SANDBOX_IMAGE", "agentdeck/sandbox-python:1")


def p50(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def p95(samples: list[float]) -> float:
    return sorted(samples)[max(0, int(len(samples) * 0.95) - 1)] * 1000


def baseline(n: int) -> list[float]:
    config = SandboxConfig(image=IMAGE)
    command = ["docker", "run", "--rm", "--network", "none", "--read-only", "--user", config.user,
               "--tmpfs", f"/workspace:rw,size={config.workspace_mb}m", "--tmpfs", f"/tmp:rw,size={config.tmp_mb}m",
               "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--pids-limit", str(config.pids),
               "--memory", f"{config.memory_mb}m", "--memory-swap", f"{config.memory_mb}m", "--cpus", str(config.cpus),
               IMAGE, "python3", "-c", SNIPPET]
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        samples.append(time.perf_counter() - started)
    return samples


def measure(sandbox: Sandbox, n: int, pause_s: float, session: str) -> list[float]:
    sandbox.run_python(session, False, SNIPPET)  # warm-up (and, with a pool, its first fill)
    time.sleep(pause_s * 3)
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        result = sandbox.run_python(session, False, SNIPPET)
        samples.append(time.perf_counter() - started)
        assert result["exit_code"] == 0 and '"sum": 4950' in result["stdout"], result
        time.sleep(pause_s)
    return samples


def main() -> int:
    n = int(os.environ.get("BENCH_SANDBOX_N", "20"))
    base = baseline(max(5, n // 2))
    figures = {}
    for label, config, pause in (
        ("cold (fresh container, no pool)", SandboxConfig(image=IMAGE, pool=0), 0.3),
        ("warm (fresh container from the pool)", SandboxConfig(image=IMAGE, pool=2), 0.6),
        ("warm (session container)", SandboxConfig(image=IMAGE, mode="session"), 0.1),
    ):
        sandbox = Sandbox(config)
        sandbox.start_maintenance()
        try:
            figures[label] = measure(sandbox, n, pause, f"bench-{time.monotonic_ns()}")
        finally:
            sandbox.close()

    b = p50(base)
    print(f"sandbox: small Python snippet, p50 over {n} calls (baseline: `docker run --rm`, hardened, same image)")
    print(f"  baseline docker run --rm                  p50 {b:7.1f} ms  p95 {p95(base):7.1f} ms")
    for label, samples in figures.items():
        print(f"  {label:40s}  p50 {p50(samples):7.1f} ms  p95 {p95(samples):7.1f} ms  ratio {p50(samples) / b:4.2f}x")
    cold = p50(figures["cold (fresh container, no pool)"])
    warm = p50(figures["warm (fresh container from the pool)"])
    print(f"  target: warm p50 <= 150 ms: {'met' if warm <= 150 else 'NOT met'} ({warm:.0f} ms); "
          f"cold p50 <= 800 ms: {'met' if cold <= 800 else 'NOT met'} ({cold:.0f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

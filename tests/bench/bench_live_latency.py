"""Live latency benchmark (TARGETS.md): from an event's commit to a browser's websocket receipt.

A real daphne (`config.asgi:application`) in its own process serves the run page's websocket
(`dashboard.consumers.RunConsumer`, `ws/runs/<id>/`) with the Redis channel layer; this
process, sharing its SQLite database and Redis, appends events to a run with the product's
`send_event_on_commit` (one transaction each, published on commit) and a websocket client
(signed in as the run's team owner) receives them. Latency = receipt time - the instant the
event's transaction committed (both clocks in this process). Events are paced (one every
`--gap-ms`), then a burst is sent; p50/p95 of each, median over rounds.

Run: `.venv/bin/python -m tests.bench.bench_live_latency [--events N] [--rounds N]`
Needs Redis at 127.0.0.1:6379 (database 12 is flushed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REDIS = "redis://127.0.0.1:6379/12"
TARGET_P95_MS = 50.0


def _setup_django(tmp: Path) -> dict[str, str]:
    env = {"SQLITE_PATH": str(tmp / "live.sqlite3"), "DJANGO_SETTINGS_MODULE": "config.settings", "REDIS_URL": REDIS,
           "CELERY_BROKER_URL": "", "AGENTDECK_RUNNER": "inline", "GATEWAY_AUTOSTART": "false"}
    os.environ.update(env)
    os.environ.pop("DATABASE_URL", None)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    import redis
    from django.core.management import call_command

    redis.Redis.from_url(REDIS, socket_connect_timeout=2).flushdb()
    call_command("migrate", verbosity=0)
    return env


def _seed() -> tuple[int, str]:
    """A team owner, a (never executed) run of a one-step pipeline; (run id, session cookie)."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    from orchestrator.actions import do_create_team
    from orchestrator.actions.pipelines import do_create_pipeline
    from orchestrator.actions.runs import do_start_run
    from orchestrator.models import Agent

    owner = get_user_model().objects.create_user("live", password="pw-live-123")
    team = do_create_team("Live", owner)
    Agent.objects.create(team=team, name="w", provider="scripted", model="scripted-1",
                         options={"script": {"replies": [{"text": "done"}]}})
    pipe = do_create_pipeline(team, "p", {"steps": [{"kind": "agent", "id": "s", "agent": "w", "prompt": "go"}]})
    run = do_start_run(pipe.latest_version(), {}, submit=False)
    browser = Client()
    browser.force_login(owner)
    return run.pk, browser.cookies[settings.SESSION_COOKIE_NAME].value


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_daphne(env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen([str(Path(sys.executable).with_name("daphne")), "-b", "127.0.0.1", "-p", str(port),
                             "config.asgi:application"], cwd=ROOT, env={**os.environ, **env},
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{base}/healthz", timeout=1)
            return proc, base
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, f"daphne did not start (see {log})"
            time.sleep(0.2)


def _append(run_id: int, tag: str, i: int, committed: dict[str, float]) -> None:
    from django.db import transaction

    from orchestrator.events import send_event_on_commit
    from orchestrator.models import Run

    run = Run.objects.get(pk=run_id)
    with transaction.atomic():
        # Registered first, so it runs right at the commit, before the event's own publish.
        transaction.on_commit(lambda: committed.__setitem__(f"{tag}{i}", time.perf_counter()))
        send_event_on_commit(run, "step.progress", {"bench": f"{tag}{i}"}, step_key="s")


async def _round(base: str, run_id: int, cookie: str, events: int, gap_ms: float, tag: str) -> dict[str, list[float]]:
    import websockets
    from asgiref.sync import sync_to_async
    from django.conf import settings

    from orchestrator.models import Run

    last_seq = await sync_to_async(lambda: Run.objects.get(pk=run_id).last_seq)()
    url = base.replace("http://", "ws://") + f"/ws/runs/{run_id}/?after={last_seq}"
    committed: dict[str, float] = {}
    received: dict[str, float] = {}
    async with websockets.connect(url, additional_headers={"Cookie": f"{settings.SESSION_COOKIE_NAME}={cookie}"},
                                  origin=base) as ws:
        async def reader() -> None:
            while len(received) < 2 * events:
                message = json.loads(await ws.recv())
                now = time.perf_counter()
                for event in message.get("events", []) if message.get("type") == "events" else []:
                    name = (event.get("data") or {}).get("bench")
                    if isinstance(name, str) and name.startswith(tag):
                        received.setdefault(name, now)

        reading = asyncio.create_task(reader())
        await asyncio.sleep(0.3)  # subscribed and caught up
        for i in range(events):  # paced: one event at a time
            await asyncio.to_thread(_append, run_id, f"{tag}p", i, committed)
            await asyncio.sleep(gap_ms / 1000)

        def burst() -> None:
            for i in range(events):
                _append(run_id, f"{tag}b", i, committed)

        await asyncio.to_thread(burst)
        async with asyncio.timeout(60):
            await reading
    out: dict[str, list[float]] = {"paced": [], "burst": []}
    for name, at in received.items():
        kind = "paced" if name.startswith(f"{tag}p") else "burst"
        out[kind].append((at - committed[name]) * 1000)
    return out


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * len(values)) - 1))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gap-ms", type=float, default=10.0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="agentdeck-live-bench-"))
    env = _setup_django(tmp)
    run_id, cookie = _seed()
    proc, base = _start_daphne(env, tmp / "daphne.log")
    results: dict[str, dict[str, list[float]]] = {"paced": {"p50": [], "p95": []}, "burst": {"p50": [], "p95": []}}
    try:
        for r in range(args.rounds):
            got = asyncio.run(_round(base, run_id, cookie, args.events, args.gap_ms, f"r{r}"))
            for kind, values in got.items():
                assert len(values) == args.events, f"{kind}: {len(values)} of {args.events} events arrived"
                results[kind]["p50"].append(statistics.median(values))
                results[kind]["p95"].append(_pct(values, 0.95))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    print(f"live latency: event commit -> websocket receipt (daphne, RunConsumer, Redis channel layer), "
          f"{args.events} events per kind, median [min-max] over {args.rounds} rounds")
    for kind, label in (("paced", f"paced (1 per {args.gap_ms:g} ms)"), ("burst", "burst (back to back)")):
        p50, p95 = results[kind]["p50"], results[kind]["p95"]
        verdict = "met" if statistics.median(p95) <= TARGET_P95_MS else "NOT met"
        print(f"  {label:<24} p50 {statistics.median(p50):6.2f} ms [{min(p50):.2f}-{max(p50):.2f}]  "
              f"p95 {statistics.median(p95):6.2f} ms [{min(p95):.2f}-{max(p95):.2f}]  (target p95 <= {TARGET_P95_MS:g} ms: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Observability page benchmark (issue 18): server time of `/observability/` against 150 ms.

Fills a SQLite file database (WAL, synchronous=FULL) with one team's 20,000 runs over 90
days — four steps each (one a review gate), three model calls each (llm.finished events and
usage records), two tool calls each (audit rows), a review item per gated run, and a share
of eval runs with internal agents — then times the whole request (middleware, queries,
template) through django.test.Client as a signed-in member, for 7, 14 and 90 days.

Run with `.venv/bin/python tests/bench/bench_observability.py`.
"""

from __future__ import annotations

import contextlib
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

RUNS = 20_000
REPEATS = 12
TARGET_MS = 150.0
SPAN = timedelta(days=90)


def _setup_django() -> bool:
    """Returns whether the database is already filled (BENCH_DB names a file kept from an earlier run)."""
    kept = os.environ.get("BENCH_DB", "")
    path = Path(kept) if kept else Path(tempfile.mkdtemp(prefix="agentdeck-bench-obs-")) / "bench.sqlite3"
    filled = path.exists()
    os.environ["SQLITE_PATH"] = str(path)
    os.environ.pop("DATABASE_URL", None)
    os.environ["GATEWAY_AUTOSTART"] = "false"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return filled


@contextlib.contextmanager
def _explicit_timestamps(*models: type) -> Iterator[None]:
    """Let bulk_create keep the timestamps given (auto_now_add would stamp them all `now`)."""
    fields = [m._meta.get_field("created_at") for m in models]
    for f in fields:
        f.auto_now_add = False
    try:
        yield
    finally:
        for f in fields:
            f.auto_now_add = True


def _fill():
    from django.contrib.auth import get_user_model

    from mcpgateway.models import AuditEntry
    from orchestrator.actions import do_create_pipeline, do_create_team
    from orchestrator.models import (
        Agent,
        ReviewItem,
        Run,
        RunEvent,
        RunStatus,
        StepRun,
        UsageRecord,
    )

    user = get_user_model().objects.create_user("bench", password="bench-password")
    team = do_create_team("Bench", user)
    agents = [Agent.objects.create(team=team, name=f"agent{i}", provider="scripted", model="scripted-1") for i in range(6)]
    agents += [Agent.objects.create(team=team, name=f"agent0--eval{i}", provider="scripted", model="scripted-1",
                                    internal=True) for i in range(20)]
    spec = {"steps": [{"kind": "agent", "id": "s", "agent": "agent0", "prompt": "x"}]}
    versions = [do_create_pipeline(team, f"pipeline {i}", spec).latest_version() for i in range(5)]
    rng = random.Random(11)
    start = datetime.now(UTC) - SPAN
    gap = SPAN / RUNS
    with _explicit_timestamps(Run, UsageRecord, ReviewItem):
        for first in range(0, RUNS, 2000):
            runs = []
            for i in range(first, min(first + 2000, RUNS)):
                created = start + gap * i
                runs.append(Run(team=team, pipeline_version=rng.choice(versions), created_by=user, created_at=created,
                                status=rng.choice([RunStatus.SUCCEEDED] * 9 + [RunStatus.FAILED]),
                                started_at=created, finished_at=created + timedelta(seconds=20), input={}))
            Run.objects.bulk_create(runs)
            runs = list(Run.objects.filter(team=team).order_by("-id")[:len(runs)])
            steps, events, usage, audit, reviews = [], [], [], [], []
            for run in runs:
                t = run.created_at
                for n, kind in enumerate(("agent", "agent", "review", "agent")):
                    length = timedelta(hours=rng.uniform(0.1, 5)) if kind == "review" else timedelta(seconds=rng.uniform(0.5, 9))
                    steps.append(StepRun(run=run, key=f"s{n}", step_id=f"s{n}", kind=kind, status="succeeded",
                                         started_at=t, finished_at=t + length))
                for seq in range(1, 4):
                    events.append(RunEvent(run=run, seq=seq, type="llm.finished", created_at=t, hash=f"{run.pk}-{seq}",
                                           data={"provider": "scripted", "model": "scripted-1",
                                                 "duration_ms": rng.uniform(200, 4000)}))
                    agent = rng.choice(agents)
                    usage.append(UsageRecord(team=team, run=run, agent=agent, provider="scripted", model="scripted-1",
                                             input_tokens=100, output_tokens=50, created_at=t,
                                             cost_usd=Decimal(rng.randint(1, 9000)) / Decimal(1_000_000)))
                for c in range(2):
                    audit.append(AuditEntry(team_id=team.pk, principal_kind="agent", agent_name="agent0", run_id=run.pk,
                                            tool_name=f"srv__tool{rng.randint(0, 11)}", status="ok",
                                            latency_ms=rng.uniform(1, 300), created_at=t + timedelta(seconds=c)))
                reviews.append(ReviewItem(team=team, run=run, step_key="s2", reason="gate", status="approved",
                                          created_at=t, decided_at=t + timedelta(hours=rng.uniform(0.1, 5))))
            StepRun.objects.bulk_create(steps, batch_size=2000)
            RunEvent.objects.bulk_create(events, batch_size=2000)
            UsageRecord.objects.bulk_create(usage, batch_size=2000)
            AuditEntry.objects.bulk_create(audit, batch_size=2000)
            ReviewItem.objects.bulk_create(reviews, batch_size=2000)
    return user


def main() -> int:
    filled = _setup_django()
    from django.contrib.auth import get_user_model
    from django.test import Client

    began = time.perf_counter()
    user = get_user_model().objects.get(username="bench") if filled else _fill()
    fill_s = time.perf_counter() - began
    client = Client()
    client.force_login(user)
    print(f"observability: {RUNS:,} runs over {SPAN.days} days in a SQLite file (filled in {fill_s:.1f} s), "
          f"{REPEATS} requests each, target {TARGET_MS:.0f} ms server time")
    worst = 0.0
    for days in (7, 14, 90):
        samples = []
        for _ in range(REPEATS + 1):
            started = time.perf_counter()
            response = client.get(f"/observability/?days={days}")
            samples.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200
        samples = sorted(samples[1:])
        median = statistics.median(samples)
        p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
        worst = max(worst, p95)
        print(f"  last {days:>2} days: median {median:6.1f} ms  p95 {p95:6.1f} ms  ratio {median / TARGET_MS:.2f}x")
    print(f"observability target (<= {TARGET_MS:.0f} ms): {'met' if worst <= TARGET_MS else 'NOT met'} "
          f"(worst p95 {worst:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.exit(main())

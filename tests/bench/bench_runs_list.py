"""Runs list benchmark (TARGETS.md): server time of `/runs/` with 100,000 runs, for each filter.

Fills a SQLite file database (`SQLITE_PATH`, a temporary file, WAL, synchronous=FULL)
with one team's 100,000 runs over ~4 months — pipelines and users with skewed
shares, so both common and rare filter values are measured — then times the whole
request (middleware, query, template) through django.test.Client as a signed-in member,
against the 150 ms target. Page ~50 is reached by following the keyset cursor.

Run with `.venv/bin/python tests/bench/bench_runs_list.py`.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html import unescape
from pathlib import Path

RUNS = 100_000
BATCH = 5_000
REPEATS = 15
TARGET_MS = 150.0
SPAN = timedelta(days=120)


def _setup_django() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="agentdeck-bench-runs-"))
    os.environ["SQLITE_PATH"] = str(tmp / "bench.sqlite3")
    os.environ.pop("DATABASE_URL", None)
    os.environ["GATEWAY_AUTOSTART"] = "false"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


@contextlib.contextmanager
def _explicit_created_at() -> Iterator[None]:
    """Let bulk_create keep the timestamps given (auto_now_add would stamp them all `now`)."""
    from orchestrator.models import Run

    field = Run._meta.get_field("created_at")
    field.auto_now_add = False
    try:
        yield
    finally:
        field.auto_now_add = True


def _fill() -> dict[str, object]:
    """One team, five pipelines (two versions each), six users, RUNS runs; returns what the filters use."""
    from django.contrib.auth import get_user_model

    from orchestrator.actions import (
        do_add_member,
        do_create_pipeline,
        do_create_team,
        do_save_pipeline_version,
    )
    from orchestrator.models import Agent, Run, RunStatus

    User = get_user_model()
    users = [User.objects.create_user(f"user{i}", password="bench-password") for i in range(6)]
    team = do_create_team("Bench", users[0])
    for user in users[1:]:
        do_add_member(team, user, "builder")
    Agent.objects.create(team=team, name="a", provider="scripted", model="scripted-1")
    spec = {"steps": [{"kind": "agent", "id": "s", "agent": "a", "prompt": "x"}]}
    pipelines = [do_create_pipeline(team, name, spec) for name in ("code-review", "market", "nightly", "rare", "unused")]
    versions = []
    for p in pipelines:
        versions.append([p.latest_version(), do_save_pipeline_version(p, {**spec, "description": "v2"})])

    rng = random.Random(7)
    pipeline_weights = [60, 30, 9, 1]
    user_weights = [40, 30, 20, 9, 1]
    statuses = [RunStatus.SUCCEEDED] * 85 + [RunStatus.FAILED] * 8 + [RunStatus.CANCELLED] * 3 + \
               [RunStatus.WAITING_REVIEW] * 3 + [RunStatus.RUNNING]
    start = datetime.now(UTC) - SPAN
    step = SPAN / RUNS
    with _explicit_created_at():
        for first in range(0, RUNS, BATCH):
            batch = []
            for i in range(first, min(first + BATCH, RUNS)):
                created = start + step * i
                status = rng.choice(statuses)
                finished = status not in (RunStatus.RUNNING, RunStatus.WAITING_REVIEW)
                batch.append(Run(
                    team=team, pipeline_version=rng.choice(versions[rng.choices(range(4), pipeline_weights)[0]]),
                    status=status, created_by=users[rng.choices(range(5), user_weights)[0]], created_at=created,
                    started_at=created + timedelta(milliseconds=40),
                    finished_at=created + timedelta(seconds=rng.uniform(1, 90)) if finished else None,
                    input={"task": "bench"}, input_tokens=rng.randint(100, 9000), output_tokens=rng.randint(50, 3000),
                    cost_usd=Decimal(rng.randint(1, 90000)) / Decimal(1_000_000),
                ))
            Run.objects.bulk_create(batch, batch_size=1000)
    return {"team": team, "users": users, "pipelines": pipelines, "start": start}


def _time(client: object, url: str) -> list[float]:
    samples = []
    for _ in range(REPEATS + 1):
        started = time.perf_counter()
        response = client.get(url)  # type: ignore[attr-defined]
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    return samples[1:]  # the first request warms the caches


def _page(client: object, url: str, number: int) -> str:
    """The URL of page `number`, reached by following the older-runs cursor."""
    for _ in range(number - 1):
        html = client.get(url).content.decode()  # type: ignore[attr-defined]
        older = re.search(r'href="(\?[^"]+)" rel="next"', html)
        assert older is not None, f"no page after {url}"
        url = url.split("?")[0] + unescape(older.group(1))
    return url


def main() -> int:
    _setup_django()
    from django.test import Client

    from dashboard.runs.queries import PAGE_SIZE

    began = time.perf_counter()
    data = _fill()
    fill_s = time.perf_counter() - began
    users, pipelines = data["users"], data["pipelines"]
    client = Client()
    client.force_login(users[0])
    day = (data["start"] + timedelta(days=60)).date()
    cases = [
        ("unfiltered, first page", "/runs/"),
        ("status = failed (8%)", "/runs/?status=failed"),
        ("status = running (1%)", "/runs/?status=running"),
        ("pipeline = code-review (60%)", f"/runs/?pipeline={pipelines[0].pk}"),
        ("pipeline = rare (1%)", f"/runs/?pipeline={pipelines[3].pk}"),
        ("pipeline = unused (no runs)", f"/runs/?pipeline={pipelines[4].pk}"),
        ("started by user0 (40%)", f"/runs/?user={users[0].pk}"),
        ("started by user4 (1%)", f"/runs/?user={users[4].pk}"),
        ("started by user5 (no runs)", f"/runs/?user={users[5].pk}"),
        ("date range, one week", f"/runs/?date_from={day}&date_to={day + timedelta(days=6)}"),
        ("status + pipeline + user", f"/runs/?status=failed&pipeline={pipelines[1].pk}&user={users[2].pk}"),
        ("page 50 via keyset cursor", _page(client, "/runs/", 50)),
        ("page 50, status = succeeded", _page(client, "/runs/?status=succeeded", 50)),
    ]
    print(f"runs list: {RUNS:,} runs of one team in a SQLite file (filled in {fill_s:.1f} s), "
          f"{PAGE_SIZE} rows a page, {REPEATS} requests each, target {TARGET_MS:.0f} ms server time")
    print(f"  {'case':34} {'median':>9} {'p95':>9} {'max':>9}  ratio (median / target)")
    worst = 0.0
    for name, url in cases:
        samples = sorted(_time(client, url))
        median = statistics.median(samples)
        p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
        worst = max(worst, p95)
        print(f"  {name:34} {median:7.1f}ms {p95:7.1f}ms {samples[-1]:7.1f}ms  {median / TARGET_MS:.2f}x")
    print(f"runs list target (<= {TARGET_MS:.0f} ms, any filter): {'met' if worst <= TARGET_MS else 'NOT met'} "
          f"(worst p95 {worst:.1f} ms, ratio {worst / TARGET_MS:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.exit(main())

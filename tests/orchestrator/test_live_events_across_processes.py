"""With the Redis channel layer, events a Celery worker process writes reach a websocket
client connected to the web process (daphne), in order, with none missing."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest
import websockets
from django.conf import settings
from django.test import Client

from orchestrator.models import RunEvent
from tests.conftest import database_env, pipeline, scripted, serving, start

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
LAYER = "redis://127.0.0.1:6379/11"


def test_it_streams_a_workers_events_to_a_websocket_on_the_web_process(team, owner, tmp_path):
    import redis

    try:
        redis.Redis.from_url(LAYER, socket_connect_timeout=1).flushdb()
    except redis.exceptions.ConnectionError:
        pytest.skip(f"no Redis at {LAYER}")
    scripted(team, "w", {"text": "step done", "delay_ms": 300})
    run = start(pipeline(team, {"steps": [{"kind": "agent", "id": f"s{i}", "agent": "w", "prompt": "go"} for i in range(3)]}))
    browser = Client()
    browser.force_login(owner)
    cookie = browser.cookies[settings.SESSION_COOKIE_NAME].value
    env = {"REDIS_URL": LAYER, "CELERY_BROKER_URL": LAYER, "AGENTDECK_RUNNER": "celery", "GATEWAY_AUTOSTART": "false"}
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo", "-l", "warning"],
                              cwd=settings.BASE_DIR, env={**os.environ, **database_env(), **env},
                              stdout=open(tmp_path / "worker.log", "w"), stderr=subprocess.STDOUT)
    try:
        with serving(env) as base:
            received = asyncio.run(_watch(base, run.pk, cookie, submit=lambda: _submit(run.pk)))
    finally:
        worker.terminate()
        worker.wait(timeout=30)

    persisted = list(RunEvent.objects.filter(run=run).order_by("seq").values_list("seq", "type"))
    assert [(e["seq"], e["type"]) for e in received] == persisted
    assert received[-1]["type"] == "run.succeeded"
    started = next(e for e in received if e["type"] == "run.started")
    assert started["data"]["worker"].split(":")[1] == str(worker.pid), "written by the worker process"


def _submit(run_id: int) -> None:
    from celery import Celery

    sender = Celery("agentdeck-test-sender", broker=LAYER, set_as_current=False)
    try:
        sender.send_task("orchestrator.tasks.execute_run_task", args=[run_id])
    finally:
        sender.close()


async def _watch(base: str, run_id: int, cookie: str, submit) -> list[dict]:
    url = base.replace("http://", "ws://") + f"/ws/runs/{run_id}/?after=0"
    events: list[dict] = []
    async with websockets.connect(url, additional_headers={"Cookie": f"{settings.SESSION_COOKIE_NAME}={cookie}"},
                                  origin=base) as ws:
        await asyncio.to_thread(submit)
        async with asyncio.timeout(60):
            while not events or events[-1]["type"] not in ("run.succeeded", "run.failed"):
                message = json.loads(await ws.recv())
                if message.get("type") == "events":
                    events += [e for e in message["events"] if e.get("seq") is not None]
    return events

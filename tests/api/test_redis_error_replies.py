"""Redis that is up but answers with an error (a replica after a failover — READONLY —, or a
Redis that cannot persist — MISCONF): the rate limiter used to fall back to the database only
on connection errors and timeouts, so every request of a caller with a per-minute limit
failed with Django's HTML 500 page instead of the API's error shape, and every tool call with
a rate-limited grant failed its run (found by a review). Now any Redis error falls back.

Starts a Redis of its own (redis-server on a free port) and makes it a replica.
"""

from __future__ import annotations

import socket
import subprocess
import time
from decimal import Decimal

import pytest
import redis as redis_lib
from django.test import Client

from mcpgateway import ratelimit
from mcpgateway.models import ApiKey
from orchestrator.models import Limit

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def read_only_redis(monkeypatch):
    """The Redis the app points at became a replica (a failover moved the primary elsewhere):
    it answers every write with `READONLY You can't write against a read only replica`."""
    from tests.conftest import _free_port

    port = _free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    url = f"redis://127.0.0.1:{port}/3"
    admin = redis_lib.Redis.from_url(url)
    admin.execute_command("REPLICAOF", "127.0.0.1", "1")  # a primary that is not there
    monkeypatch.setattr(ratelimit, "_limiter", ratelimit.RedisLimiter(url))
    yield
    admin.close()
    proc.terminate()
    proc.wait(10)


def test_an_api_request_under_a_rate_limit_answers_in_the_error_shape_when_redis_is_read_only(keys, read_only_redis):
    key_id = ApiKey.objects.get(name="viewer").pk
    Limit.objects.create(team=keys["team"], scope="api_key", api_key_id=key_id, kind="requests_per_minute", value=Decimal(10))

    client = Client(raise_request_exception=False)
    response = client.get("/api/v1/runs", HTTP_AUTHORIZATION=f"Bearer {keys['viewer']}")

    assert response.status_code != 500, "a Redis error reply became a 500"
    assert response.status_code == 200 and response.get("Content-Type", "").startswith("application/json")


def test_a_runs_rate_limited_tool_call_degrades_when_redis_is_read_only(team, gateway_runtime, read_only_redis):
    import sys

    from asgiref.sync import async_to_sync
    from django.conf import settings

    from mcpgateway.actions.access import do_grant
    from mcpgateway.actions.servers import do_save_server
    from orchestrator.execution import execute_run
    from tests.conftest import pipeline, scripted, start, start_servers

    server = do_save_server(team.pk, "echo", transport="stdio", command=sys.executable,
                            args=["-m", "tests.fakes.mcp_echo_server"], cwd=str(settings.BASE_DIR), operator=True)
    do_grant(server, agent="w", calls_per_minute=10)
    start_servers(gateway_runtime, server)
    scripted(team, "w", {"tool_calls": [{"name": "echo__echo", "arguments": {"message": "hi"}}]}, {"text": "done: {{last}}"})
    run = start(pipeline(team, {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "go"}]}))

    async_to_sync(execute_run)(run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded", "a Redis error reply failed the run instead of falling back to the database"

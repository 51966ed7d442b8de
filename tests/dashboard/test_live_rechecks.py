"""Open live streams after things change under them (found by a review).

- The API's event stream (SSE) skipped for good an event whose live publication came after a
  later one's (another writer's), and ended on the run's finished status without the run's
  last events when their publication was lost: it now fills gaps from the database and,
  every `LIVE_RECHECK_S` without a live message, catches up from it.
- An open run page never learned that its run ended when the run's last events were
  committed during a channel-layer stall (publishing pauses for 5 s after a timeout): the
  run socket now catches up from the database every `LIVE_RECHECK_S`.
- A user deactivated, or removed from the team, kept receiving the team's events on a socket
  (or an SSE stream) opened before: access is re-checked, at most `ACCESS_MAX_AGE_S` old
  before live events go out, and the socket is closed (4403).

Real parts: the real consumers behind the session auth stack, the Redis channel layer on a
redis-server of the test's own (paused with CLIENT PAUSE: a hang, not a restart), the real
actions, the API through Django's async client.
"""

from __future__ import annotations

import asyncio
import json
import socket as pysocket
import subprocess
import time

import pytest
from asgiref.sync import async_to_sync
from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings as dj_settings
from django.db import transaction
from django.test import AsyncClient, Client
from django.utils import timezone

from dashboard.consumers import ACCESS_MAX_AGE_S
from dashboard.routing import websocket_urlpatterns
from mcpgateway.actions.access import do_create_api_key, do_revoke_api_key
from orchestrator.actions import do_cancel_run
from orchestrator.events import build_events, send_event_on_commit
from orchestrator.models import Membership, Run, RunEvent
from tests.conftest import _free_port, pipeline, scripted, start

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fresh_channel_layer(settings):
    settings.LIVE_RECHECK_S = 1.0
    channel_layers.backends.pop("default", None)
    yield
    channel_layers.backends.pop("default", None)


def cookie_for(user):
    client = Client()
    client.force_login(user)
    name = dj_settings.SESSION_COOKIE_NAME
    return [(b"cookie", f"{name}={client.cookies[name].value}".encode())]


def app():
    return AuthMiddlewareStack(URLRouter(websocket_urlpatterns))


def append(run, *types):
    with transaction.atomic():
        for t in types:
            send_event_on_commit(run, t, {"note": t})


def append_unpublished(run, type):
    """Another writer's event: committed, its publication still to come (or lost)."""
    with transaction.atomic():
        locked = Run.objects.select_for_update().get(pk=run.pk)
        (row,) = build_events(locked, [(type, "", {})], timezone.now())
        RunEvent.objects.create(**{**{k: v for k, v in row.items() if k != "_data"}, "data": {}})
        Run.objects.filter(pk=run.pk).update(last_seq=locked.last_seq, last_hash=locked.last_hash)


def frames(text):
    return [json.loads(f.split("data: ", 1)[1]) for f in text.split("\n\n") if f.startswith("id:")]


def _run(team):
    scripted(team, "w", {"text": "done"})
    return start(pipeline(team, {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "x"}]}))


# --- the API's event stream ---------------------------------------------------------------

def test_sse_fills_a_gap_when_a_later_event_is_published_first(team, owner):
    run = _run(team)
    _, token = do_create_api_key(team.pk, "k", owner, scopes=["read"])

    async def scenario():
        response = await AsyncClient().get(f"/api/v1/runs/{run.pk}/events/stream",
                                           headers={"Authorization": f"Bearer {token}"})
        chunks = response.streaming_content.__aiter__()
        first = await asyncio.wait_for(chunks.__anext__(), 5)  # run.queued (seq 1), from the database
        text = first.decode() if isinstance(first, bytes) else first
        await database_sync_to_async(append_unpublished)(run, "test.slow_writer")   # seq 2, not yet published
        await database_sync_to_async(append)(run, "test.fast_writer", "run.cancelled")  # seq 3, 4, published
        try:
            while True:
                chunk = await asyncio.wait_for(chunks.__anext__(), 5)
                text += chunk.decode() if isinstance(chunk, bytes) else chunk
        except (StopAsyncIteration, TimeoutError):
            pass
        return text

    text = async_to_sync(scenario)()
    seqs = [p["seq"] for p in frames(text)]
    assert seqs == [1, 2, 3, 4], f"SSE sent seqs {seqs}: event 2 (test.slow_writer) was skipped"


def test_sse_does_not_end_before_sending_the_runs_last_events(team, owner):
    """The run ends while its last events' live publication was lost (a Redis blip pauses
    publishing for 5 s; a full channel drops messages; another process's in-memory layer):
    at its keep-alive the stream reads the status, sees the run finished and closes without
    the events the database holds."""
    run = _run(team)
    _, token = do_create_api_key(team.pk, "k", owner, scopes=["read"])

    def finish_unpublished():
        append_unpublished(run, "run.cancelled")
        Run.objects.filter(pk=run.pk).update(status="cancelled", finished_at=timezone.now())

    async def scenario():
        response = await AsyncClient().get(f"/api/v1/runs/{run.pk}/events/stream",
                                           headers={"Authorization": f"Bearer {token}"})
        chunks = response.streaming_content.__aiter__()
        first = await asyncio.wait_for(chunks.__anext__(), 5)
        text = first.decode() if isinstance(first, bytes) else first
        await database_sync_to_async(finish_unpublished)()
        ended = False
        try:
            while True:
                chunk = await asyncio.wait_for(chunks.__anext__(), 10)
                text += chunk.decode() if isinstance(chunk, bytes) else chunk
        except StopAsyncIteration:
            ended = True
        except TimeoutError:
            pass
        return text, ended

    text, ended = async_to_sync(scenario)()
    seqs = [p["seq"] for p in frames(text)]
    assert ended, "the stream should end once the run has finished"
    assert seqs == [1, 2], f"the stream ended after seqs {seqs}; run.cancelled (seq 2) is in the database but was never sent"


def test_sse_stops_for_a_revoked_key(team, owner):
    run = _run(team)
    key, token = do_create_api_key(team.pk, "k", owner, scopes=["read"])

    async def scenario():
        response = await AsyncClient().get(f"/api/v1/runs/{run.pk}/events/stream",
                                           headers={"Authorization": f"Bearer {token}"})
        chunks = response.streaming_content.__aiter__()
        text = (await asyncio.wait_for(chunks.__anext__(), 5)).decode()
        await database_sync_to_async(do_revoke_api_key)(key)
        await asyncio.sleep(0.2)
        await database_sync_to_async(append_unpublished)(run, "test.after_revocation")
        ended = False
        try:
            while True:
                chunk = await asyncio.wait_for(chunks.__anext__(), 10)
                text += chunk.decode() if isinstance(chunk, bytes) else chunk
        except StopAsyncIteration:
            ended = True
        except TimeoutError:
            pass
        return text, ended

    text, ended = async_to_sync(scenario)()
    assert ended, "the stream of a revoked key should end"
    assert [p["seq"] for p in frames(text)] == [1], frames(text)


def test_sse_of_a_busy_run_stops_for_a_revoked_key(team, owner):
    """A run that keeps producing events never reached the quiet keep-alive where access was
    re-checked: it kept streaming to a revoked key (found by a review of this change)."""
    run = _run(team)
    key, token = do_create_api_key(team.pk, "k", owner, scopes=["read"])

    def event(n):
        with transaction.atomic():
            send_event_on_commit(run, "test.busy", {"n": n})

    async def scenario():
        response = await AsyncClient().get(f"/api/v1/runs/{run.pk}/events/stream",
                                           headers={"Authorization": f"Bearer {token}"})
        chunks = response.streaming_content.__aiter__()
        text = (await asyncio.wait_for(chunks.__anext__(), 5)).decode()
        await database_sync_to_async(do_revoke_api_key)(key)

        async def producer():
            for n in range(20):  # one event every 0.3 s for 6 s: a run that is working
                await database_sync_to_async(event)(n)
                await asyncio.sleep(0.3)

        busy = asyncio.ensure_future(producer())
        ended = False
        try:
            while True:
                chunk = await asyncio.wait_for(chunks.__anext__(), 3)
                text += chunk.decode() if isinstance(chunk, bytes) else chunk
        except StopAsyncIteration:
            ended = True
        except TimeoutError:
            pass
        await busy
        return text, ended

    text, ended = async_to_sync(scenario)()
    after = [p for p in frames(text) if p["type"] == "test.busy"]
    # A check at most LIVE_RECHECK_S (1 s) old would let through at most ~4 events.
    assert len(after) <= 4, f"a revoked key kept receiving {len(after)} events over 6 s (ended={ended})"


# --- the run page's socket ----------------------------------------------------------------

@pytest.mark.parametrize("revoke", ["deactivated", "removed_from_team"])
def test_a_user_who_lost_access_gets_no_more_events(team, teammate, revoke):
    run = _run(team)
    headers = cookie_for(teammate)

    def take_access_away():
        if revoke == "deactivated":
            teammate.is_active = False
            teammate.save(update_fields=["is_active"])
        else:
            Membership.objects.filter(team=team, user=teammate).delete()

    def secret_event():
        with transaction.atomic():
            send_event_on_commit(run, "test.after_revocation", {"text": "confidential"})

    async def scenario():
        socket = WebsocketCommunicator(app(), f"/ws/runs/{run.pk}/", headers=headers)
        connected, _ = await socket.connect()
        assert connected
        while (await socket.receive_json_from(timeout=5))["type"] != "caught_up":
            pass
        await database_sync_to_async(take_access_away)()
        # a new connection is refused now...
        again = WebsocketCommunicator(app(), f"/ws/runs/{run.pk}/", headers=headers)
        refused = not (await again.connect())[0]
        await asyncio.sleep(ACCESS_MAX_AGE_S + 0.1)  # the bound on a check's age
        # ...but the open one keeps getting the team's events
        await database_sync_to_async(secret_event)()
        got = None
        if not await socket.receive_nothing(timeout=2, interval=0.05):
            got = await socket.receive_output(timeout=2)
            got = None if got["type"] == "websocket.close" and got.get("code") == 4403 else got
        await socket.disconnect()
        return refused, got

    refused, got = async_to_sync(scenario)()
    assert refused, "a new connection should be refused"
    assert got is None, f"the open socket of a user who lost access still received: {got}"


@pytest.fixture
def own_redis():
    port = _free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            pysocket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def redis_layer(own_redis, settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                           "CONFIG": {"hosts": [f"redis://127.0.0.1:{own_redis}/0"]}}}
    channel_layers.backends.pop("default", None)
    yield own_redis
    channel_layers.backends.pop("default", None)


def test_open_run_page_learns_that_the_run_ended_after_a_layer_blip(team, owner, redis_layer):
    run = _run(team)
    headers = cookie_for(owner)

    def blip_then_event():
        subprocess.run(["redis-cli", "-p", str(redis_layer), "CLIENT", "PAUSE", "3000", "ALL"], check=True,
                       stdout=subprocess.DEVNULL)
        with transaction.atomic():
            send_event_on_commit(run, "test.during_blip", {})  # its publish times out (2 s): publishing pauses 5 s

    async def scenario():
        socket = WebsocketCommunicator(app(), f"/ws/runs/{run.pk}/?after=0", headers=headers)
        connected, _ = await socket.connect(timeout=5)
        assert connected
        received = []
        while True:
            m = await socket.receive_json_from(timeout=5)
            received.append(m)
            if m["type"] == "caught_up":
                break
        await database_sync_to_async(blip_then_event)()
        await asyncio.sleep(1.5)  # Redis answers again; the web process's socket never closed
        await database_sync_to_async(lambda: do_cancel_run(Run.objects.get(pk=run.pk), owner))()  # committed; its publish skipped
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:
            if not await socket.receive_nothing(timeout=1, interval=0.05):
                received.append(await socket.receive_json_from(timeout=5))
            if any(e["type"] == "run.cancelled" for m in received for e in m.get("events", [])):
                break
        await socket.disconnect()
        return received

    received = async_to_sync(scenario)()
    types = [e["type"] for m in received for e in m.get("events", [])]
    assert Run.objects.get(pk=run.pk).status == "cancelled"
    assert "run.cancelled" in types, f"the open run page got {types}; run.cancelled never reached it (page still shows Queued)"

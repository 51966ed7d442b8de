"""The live pages' websockets: a run's events caught up and then live, exactly once and in order;
the team socket's review count and run changes; who may connect."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import transaction
from django.test import Client
from django.utils import timezone

from dashboard.access import SESSION_KEY
from dashboard.routing import websocket_urlpatterns
from mcpgateway.inprocess import InProcessToolbox
from orchestrator.actions import do_create_team
from orchestrator.events import build_events, publish, send_event_on_commit
from orchestrator.execution import execute_run
from orchestrator.models import ReviewItem, Run, RunEvent
from tests.conftest import pipeline, scripted, start

pytestmark = pytest.mark.django_db(transaction=True)

Message = dict[str, Any]


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    """A new in-memory layer per test: its queues belong to the test's event loop."""
    channel_layers.backends.pop("default", None)
    yield
    channel_layers.backends.pop("default", None)


@pytest.fixture
def run(team):
    scripted(team, "worker", {"text": "done"})
    return start(pipeline(team, {"steps": [{"kind": "agent", "id": "work", "agent": "worker", "prompt": "x"}]}))


def app():
    return AuthMiddlewareStack(URLRouter(websocket_urlpatterns))


def cookie_for(user, team_id: int | None = None) -> list[tuple[bytes, bytes]]:
    client = Client()
    client.force_login(user)
    if team_id is not None:
        session = client.session
        session[SESSION_KEY] = team_id
        session.save()
    name = settings.SESSION_COOKIE_NAME
    return [(b"cookie", f"{name}={client.cookies[name].value}".encode())]


def run_socket(run_id: int, headers: list[tuple[bytes, bytes]], after: int | None = None) -> WebsocketCommunicator:
    query = "" if after is None else f"?after={after}"
    return WebsocketCommunicator(app(), f"/ws/runs/{run_id}/{query}", headers=headers)


def append(run: Run, *types: str) -> None:
    """Append events the way actions do: in a transaction, published once it commits."""
    with transaction.atomic():
        for type in types:
            send_event_on_commit(run, type, {"note": type})


def append_unpublished(run: Run, type: str) -> None:
    """Append an event whose publication has not happened yet (another writer, slower to announce)."""
    with transaction.atomic():
        locked = Run.objects.select_for_update().get(pk=run.pk)
        (row,) = build_events(locked, [(type, "", {})], timezone.now())
        RunEvent.objects.create(**{**{k: v for k, v in row.items() if k != "_data"}, "data": {}})
        Run.objects.filter(pk=run.pk).update(last_seq=locked.last_seq, last_hash=locked.last_hash)


async def receive_until(socket: WebsocketCommunicator, done: Callable[[Message], bool], timeout: float = 5) -> list[Message]:
    messages = []
    while True:
        message = await socket.receive_json_from(timeout=timeout)
        messages.append(message)
        if done(message):
            return messages


def caught_up(message: Message) -> bool:
    return message["type"] == "caught_up"


def seqs(messages: list[Message]) -> list[int]:
    return [e["seq"] for m in messages if m["type"] == "events" for e in m["events"] if e["seq"] is not None]


def test_it_catches_up_from_after_with_exactly_the_later_events_in_order(run, teammate):
    append(run, *[f"test.e{i}" for i in range(5)])  # run.queued was #1
    headers = cookie_for(teammate)

    async def scenario() -> list[Message]:
        socket = run_socket(run.pk, headers, after=2)
        connected, _ = await socket.connect()
        assert connected
        messages = await receive_until(socket, caught_up)
        await socket.disconnect()
        return messages

    messages = async_to_sync(scenario)()

    assert seqs(messages) == [3, 4, 5, 6]
    assert messages[-1] == {"type": "caught_up", "seq": 6}
    assert [e["type"] for e in messages[0]["events"]] == ["test.e1", "test.e2", "test.e3", "test.e4"]


def test_it_catches_up_in_batches(run, owner, monkeypatch):
    from dashboard import consumers

    monkeypatch.setattr(consumers, "CATCH_UP_BATCH", 2)
    append(run, *[f"test.e{i}" for i in range(4)])
    headers = cookie_for(owner)

    async def scenario() -> list[Message]:
        socket = run_socket(run.pk, headers)
        await socket.connect()
        messages = await receive_until(socket, caught_up)
        await socket.disconnect()
        return messages

    messages = async_to_sync(scenario)()

    assert [len(m["events"]) for m in messages[:-1]] == [2, 2, 1]
    assert seqs(messages) == [1, 2, 3, 4, 5]


def test_it_forwards_events_committed_while_connected(run, owner):
    headers = cookie_for(owner)

    async def scenario() -> list[Message]:
        socket = run_socket(run.pk, headers, after=1)
        await socket.connect()
        await receive_until(socket, caught_up)
        await database_sync_to_async(append)(run, "test.live1", "test.live2")
        live = await receive_until(socket, lambda m: 3 in seqs([m]))
        await socket.disconnect()
        return live

    live = async_to_sync(scenario)()

    assert seqs(live) == [2, 3]
    assert live[0]["events"][0]["data"] == {"note": "test.live1"}


def test_it_forwards_streamed_text_as_it_comes(run, owner):
    delta = {"run_id": run.pk, "seq": None, "type": "llm.delta", "step_key": "work", "data": {"turn": 1, "text": "Hel"},
             "ephemeral": True}
    headers = cookie_for(owner)

    async def scenario() -> Message:
        socket = run_socket(run.pk, headers, after=1)
        await socket.connect()
        await receive_until(socket, caught_up)
        await publish([delta])
        message = await socket.receive_json_from(timeout=5)
        await socket.disconnect()
        return message

    assert async_to_sync(scenario)() == {"type": "events", "events": [delta]}


def test_it_reconnects_after_the_last_seq_without_duplicates_or_gaps(run, owner):
    append(run, "test.a", "test.b", "test.c")
    headers = cookie_for(owner)

    async def scenario() -> tuple[list[Message], list[Message]]:
        first = run_socket(run.pk, headers)
        await first.connect()
        before = await receive_until(first, caught_up)
        await first.disconnect()
        await database_sync_to_async(append)(run, "test.d", "test.e")
        second = run_socket(run.pk, headers, after=seqs(before)[-1])
        await second.connect()
        after = await receive_until(second, caught_up)
        await database_sync_to_async(append)(run, "test.f")
        after += await receive_until(second, lambda m: m["type"] == "events")
        await second.disconnect()
        return before, after

    before, after = async_to_sync(scenario)()

    assert seqs(before) == [1, 2, 3, 4]
    assert seqs(after) == [5, 6, 7]


def test_it_fills_a_gap_when_a_later_event_is_published_first(run, owner):
    headers = cookie_for(owner)

    async def scenario() -> list[Message]:
        socket = run_socket(run.pk, headers, after=1)
        await socket.connect()
        await receive_until(socket, caught_up)
        await database_sync_to_async(append_unpublished)(run, "test.slow_writer")
        await database_sync_to_async(append)(run, "test.fast_writer")
        messages = await receive_until(socket, lambda m: 3 in seqs([m]))
        await socket.disconnect()
        return messages

    messages = async_to_sync(scenario)()

    assert seqs(messages) == [2, 3]


def test_it_streams_a_real_run_in_order_with_its_model_text(run, owner):
    headers = cookie_for(owner)

    async def scenario() -> list[Message]:
        socket = run_socket(run.pk, headers, after=1)
        await socket.connect()
        await receive_until(socket, caught_up)
        await execute_run(run.pk, toolbox=InProcessToolbox())
        messages = await receive_until(
            socket, lambda m: any(e["type"] == "run.succeeded" for e in m.get("events", [])))
        await socket.disconnect()
        return messages

    messages = async_to_sync(scenario)()

    run.refresh_from_db()
    assert seqs(messages) == list(range(2, run.last_seq + 1))
    deltas = [e for m in messages for e in m["events"] if e["type"] == "llm.delta"]
    assert "".join(d["data"]["text"] for d in deltas) == "done"


def test_it_rejects_anonymous_visitors(run):
    async def scenario() -> bool:
        connected, _ = await run_socket(run.pk, []).connect()
        return connected

    assert async_to_sync(scenario)() is False


def test_it_rejects_members_of_other_teams(run, outsider):
    do_create_team("Elsewhere", outsider)
    headers = cookie_for(outsider)

    async def scenario() -> bool:
        connected, _ = await run_socket(run.pk, headers).connect()
        return connected

    assert async_to_sync(scenario)() is False


def test_it_rejects_an_unknown_run(run, owner):
    headers = cookie_for(owner)

    async def scenario() -> bool:
        connected, _ = await run_socket(run.pk + 1000, headers).connect()
        return connected

    assert async_to_sync(scenario)() is False


def team_socket(headers: list[tuple[bytes, bytes]]) -> WebsocketCommunicator:
    return WebsocketCommunicator(app(), "/ws/team/", headers=headers)


def test_it_sends_the_pending_review_count_on_connect(run, teammate):
    ReviewItem.objects.create(team_id=run.team_id, run=run, step_key="work", reason="gate")
    ReviewItem.objects.create(team_id=run.team_id, run=run, step_key="work", reason="gate", status="approved")
    headers = cookie_for(teammate)

    async def scenario() -> Message:
        socket = team_socket(headers)
        connected, _ = await socket.connect()
        assert connected
        message = await socket.receive_json_from(timeout=5)
        await socket.disconnect()
        return message

    assert async_to_sync(scenario)() == {"type": "review_count", "count": 1}


def test_it_forwards_team_events_with_a_fresh_review_count(run, owner):
    def pause_for_review() -> None:
        ReviewItem.objects.create(team_id=run.team_id, run=run, step_key="work", reason="gate")
        append(run, "run.waiting_review")
    headers = cookie_for(owner)

    async def scenario() -> list[Message]:
        socket = team_socket(headers)
        await socket.connect()
        await socket.receive_json_from(timeout=5)
        await database_sync_to_async(pause_for_review)()
        messages = [await socket.receive_json_from(timeout=5), await socket.receive_json_from(timeout=5)]
        await socket.disconnect()
        return messages

    event, count = async_to_sync(scenario)()

    assert event["type"] == "team_event" and event["event"]["type"] == "run.waiting_review"
    assert event["event"]["run_id"] == run.pk
    assert count == {"type": "review_count", "count": 1}


def test_it_follows_the_team_chosen_in_the_session(run, owner):
    other = do_create_team("Zeta", owner)
    ReviewItem.objects.create(team_id=run.team_id, run=run, step_key="work", reason="gate")
    headers = cookie_for(owner, team_id=other.pk)

    async def scenario() -> Message:
        socket = team_socket(headers)
        await socket.connect()
        message = await socket.receive_json_from(timeout=5)
        await socket.disconnect()
        return message

    assert async_to_sync(scenario)() == {"type": "review_count", "count": 0}


def test_it_rejects_the_team_socket_for_anonymous_visitors_and_users_in_no_team(outsider):
    headers = cookie_for(outsider)

    async def scenario() -> tuple[bool, bool]:
        anonymous, _ = await team_socket([]).connect()
        teamless, _ = await team_socket(headers).connect()
        return anonymous, teamless

    assert async_to_sync(scenario)() == (False, False)

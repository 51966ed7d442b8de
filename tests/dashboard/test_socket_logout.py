# Found by an outside review (2026-12-07, the live pages); failed before its fix.
"""Review: an open run/team socket keeps streaming after its browser session logged out."""
from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as dj_settings
from django.contrib.sessions.models import Session
from django.db import transaction
from django.test import Client

from dashboard.consumers import ACCESS_MAX_AGE_S
from orchestrator.events import send_event_on_commit
from tests.dashboard.test_live_rechecks import _run, app, fresh_channel_layer  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


def _logged_in(user):
    client = Client()
    client.force_login(user)
    name = dj_settings.SESSION_COOKIE_NAME
    return client, [(b"cookie", f"{name}={client.cookies[name].value}".encode())]


def test_run_socket_stops_after_its_session_logs_out(team, teammate):
    run = _run(team)
    client, headers = _logged_in(teammate)

    def secret_event():
        with transaction.atomic():
            send_event_on_commit(run, "test.after_logout", {"text": "confidential"})

    async def scenario():
        socket = WebsocketCommunicator(app(), f"/ws/runs/{run.pk}/", headers=headers)
        connected, _ = await socket.connect()
        assert connected
        while (await socket.receive_json_from(timeout=5))["type"] != "caught_up":
            pass
        await database_sync_to_async(client.logout)()  # the session is flushed server-side
        assert not await database_sync_to_async(Session.objects.exists)()
        again = WebsocketCommunicator(app(), f"/ws/runs/{run.pk}/", headers=headers)
        refused = not (await again.connect())[0]
        await asyncio.sleep(max(ACCESS_MAX_AGE_S, dj_settings.LIVE_RECHECK_S) + 0.3)
        await database_sync_to_async(secret_event)()
        got = None
        if not await socket.receive_nothing(timeout=2, interval=0.05):
            got = await socket.receive_output(timeout=2)
            got = None if got["type"] == "websocket.close" else got
        await socket.disconnect()
        return refused, got

    refused, got = async_to_sync(scenario)()
    assert refused, "a new connection with the logged-out cookie should be refused"
    assert got is None, f"the socket of a logged-out session still received: {got}"


def test_team_socket_stops_after_its_session_logs_out(team, teammate):
    run = _run(team)
    client, headers = _logged_in(teammate)

    def team_event():
        with transaction.atomic():
            send_event_on_commit(run, "run.note_after_logout", {"text": "confidential"})

    async def scenario():
        socket = WebsocketCommunicator(app(), "/ws/team/", headers=headers)
        connected, _ = await socket.connect()
        assert connected
        assert (await socket.receive_json_from(timeout=5))["type"] == "review_count"
        await database_sync_to_async(client.logout)()
        await asyncio.sleep(max(ACCESS_MAX_AGE_S, dj_settings.LIVE_RECHECK_S) + 0.3)
        await database_sync_to_async(team_event)()
        got = None
        if not await socket.receive_nothing(timeout=2, interval=0.05):
            got = await socket.receive_output(timeout=2)
            got = None if got["type"] == "websocket.close" else got
        await socket.disconnect()
        return got

    got = async_to_sync(scenario)()
    assert got is None, f"the team socket of a logged-out session still received: {got}"

"""Websockets of the live pages: one run's events, and a team's run and review changes.

`ws/runs/<id>/?after=<seq>` follows the zulip recipe: subscribe to the run's group first,
then send the persisted events after `seq` from the database, then forward live ones, so
nothing that commits meanwhile is lost; the consumer (and the page) drop any event at or
below the last sequence number sent, so nothing arrives twice. Streamed model text
(`llm.delta`, never persisted, `seq` None) is forwarded as it comes.

Messages to the client:
  {"type": "events", "events": [payload, ...]}   persisted events in seq order, and deltas
  {"type": "caught_up", "seq": N}                 the catch-up is done; N is the last seq sent

`ws/team/` sends {"type": "review_count", "count": N} on connect and after every team
event, and forwards each event as {"type": "team_event", "event": payload}.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib.auth import get_user_model

from authz.policy import Actor, allows, is_instance_operator
from authz.routes import WEBSOCKET_ROUTES
from dashboard.access import SESSION_KEY
from dashboard.queries import pending_count
from mcpgateway.whole_numbers import whole
from orchestrator.events import event_payload, register_consumer_loop, run_group, team_group
from orchestrator.models import Membership, Run, RunEvent

CATCH_UP_BATCH = 200
REJECTED = 4403
ACCESS_MAX_AGE_S = 1.0  # live events go out only under an access check at most this old


def _allowed(user: Any, team_id: int | None, consumer: str) -> bool:
    """The policy table's answer for this consumer (authz.routes.WEBSOCKET_ROUTES) in `team_id`."""
    if team_id is None:
        return False
    role = Membership.objects.filter(team_id=team_id, user_id=user.pk).values_list("role", flat=True).first()
    return allows(Actor(role=role, scopes=None, is_operator=is_instance_operator(user)), WEBSOCKET_ROUTES[consumer])


@database_sync_to_async
def _watchable_run(user: Any, run_id: int) -> bool:
    """Whether `user` may watch the run: it exists and the policy lets them read its team's runs."""
    team_id = Run.objects.filter(pk=run_id).values_list("team_id", flat=True).first()
    return _allowed(user, team_id, "RunConsumer")


@database_sync_to_async
def _still_allowed(user_id: int, team_id: int, consumer: str, session_key: str | None) -> bool:
    """Whether the user may still watch (re-read: an operator may have deactivated them, an
    owner removed them from the team or changed their role, since the socket opened), and
    whether the browser session the socket opened with still signs them in: a socket kept
    streaming after its session logged out or its password changed (a review)."""
    if session_key is None:
        user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    else:
        user = _session_user(session_key)
        user = user if user is not None and user.pk == user_id else None
    return user is not None and _allowed(user, team_id, consumer)


def _session_user(session_key: str) -> Any:
    """The user the session `session_key` signs in now, as a page request would find it
    (`django.contrib.auth.get_user`: the session exists, names an active user, and its auth
    hash still matches theirs), or None."""
    from importlib import import_module

    from django.contrib.auth import get_user

    class _Request:
        session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)

    user = get_user(_Request())
    return user if user.is_authenticated else None


@database_sync_to_async
def _run_last_seq(run_id: int) -> int:
    return Run.objects.filter(pk=run_id).values_list("last_seq", flat=True).first() or 0


@database_sync_to_async
def _events_between(run_id: int, after: int, upto: int | None, limit: int) -> list[dict[str, Any]]:
    events = RunEvent.objects.filter(run_id=run_id, seq__gt=after).order_by("seq")
    if upto is not None:
        events = events.filter(seq__lte=upto)
    return [event_payload(e) for e in events[:limit]]


@database_sync_to_async
def _current_team_id(user: Any, session: Any) -> int | None:
    """The team the user's pages show (the session's choice, else their first team), like `dashboard.access`."""
    team_ids = list(Membership.objects.filter(user_id=user.pk).order_by("team__name").values_list("team_id", flat=True))
    if not team_ids:
        return None
    wanted = session.get(SESSION_KEY) if session is not None else None
    team_id = wanted if wanted in team_ids else team_ids[0]
    return team_id if _allowed(user, team_id, "TeamConsumer") else None


@database_sync_to_async
def _pending_reviews(team_id: int) -> int:
    return pending_count(team_id)  # (the /mcp calls waiting on a person included: the badge counts both)


def _after(query_string: bytes) -> int:
    values = parse_qs(query_string.decode("latin-1")).get("after", ["0"])
    return whole(values[0]) or 0


def _signed_in(scope: dict[str, Any]) -> Any:
    user = scope.get("user")
    return user if user is not None and user.is_authenticated else None


class _Watched(AsyncJsonWebsocketConsumer):
    """A live socket that keeps checking, every `LIVE_RECHECK_S`, that its viewer may still
    watch — access was checked at connect only, so a deactivated user, or one removed from
    the team, kept receiving its events (streamed model text too) for as long as the socket
    stayed open — and closes it (4403) once they may not. Live events go out only under a
    check at most `ACCESS_MAX_AGE_S` old."""

    group: str | None = None
    watcher: asyncio.Task | None = None
    consumer = ""
    watched: tuple[int, int] | None = None  # (user id, team id), once accepted
    session_key: str | None = None  # the browser session it opened with (None: no session, e.g. tests' scopes)
    checked_at = 0.0
    revoked = False

    def _watch(self, user_id: int, team_id: int) -> None:
        self.watched, self.checked_at = (user_id, team_id), time.monotonic()
        self.session_key = getattr(self.scope.get("session"), "session_key", None)
        self.watcher = asyncio.ensure_future(self._watching())

    async def _allowed_now(self, max_age: float) -> bool:
        """Access re-checked when the last check is older than `max_age`; closed (4403) once gone."""
        if self.revoked:
            return False
        if self.watched is None or time.monotonic() - self.checked_at < max_age:
            return True
        self.checked_at = time.monotonic()
        if await _still_allowed(*self.watched, self.consumer, self.session_key):
            return True
        self.revoked = True
        await self.close(code=REJECTED)
        return False

    async def _may_send(self) -> bool:
        """Before live events go out: access at most `ACCESS_MAX_AGE_S` old."""
        return await self._allowed_now(ACCESS_MAX_AGE_S)

    async def _watching(self) -> None:
        while True:
            await asyncio.sleep(settings.LIVE_RECHECK_S)
            if not await self._allowed_now(0):
                return
            await self._tick()

    async def _tick(self) -> None:
        """Each re-check's own work, after access was confirmed."""

    async def disconnect(self, code: int) -> None:
        if self.watcher is not None:
            self.watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.watcher
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)


class RunConsumer(_Watched):
    """One run's event stream: catch-up from `?after=`, then live, in seq order, without duplicates."""

    consumer = "RunConsumer"

    async def connect(self) -> None:
        user = _signed_in(self.scope)
        self.run_id = int(self.scope["url_route"]["kwargs"]["run_id"])
        if user is None or not await _watchable_run(user, self.run_id):
            await self.close(code=REJECTED)
            return
        self.last_seq = _after(self.scope.get("query_string", b""))
        self.sending = asyncio.Lock()  # live events and the periodic catch-up, one at a time
        register_consumer_loop()
        self.group = run_group(self.run_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        async with self.sending:
            await self._send_persisted(upto=None)
            await self.send_json({"type": "caught_up", "seq": self.last_seq})
        team_id = await database_sync_to_async(lambda: Run.objects.values_list("team_id", flat=True).get(pk=self.run_id))()
        self._watch(user.pk, team_id)

    async def _tick(self) -> None:
        # Events committed but never published (a channel-layer stall pauses publishing for a
        # while; a message dropped by a full channel) reached the page only with a later
        # event, so a run's last ones never did: its page kept showing it running.
        if await _run_last_seq(self.run_id) > self.last_seq:
            async with self.sending:
                await self._send_persisted(upto=None)

    async def run_events(self, message: dict[str, Any]) -> None:
        """Live events from the channel layer (`{"type": "run.events", "events": [...]}`)."""
        events = message["events"]
        persisted = [e for e in events if e.get("seq") is not None]
        if not await self._may_send():
            return
        async with self.sending:
            if persisted and persisted[0]["seq"] > self.last_seq + 1:
                # Another writer's events were published after these: fill the gap from the database.
                await self._send_persisted(upto=persisted[0]["seq"] - 1)
            fresh = [e for e in events if e.get("seq") is None or e["seq"] > self.last_seq]
            if fresh:
                self.last_seq = max([self.last_seq, *(e["seq"] for e in fresh if e.get("seq") is not None)])
                await self.send_json({"type": "events", "events": fresh})

    async def _send_persisted(self, upto: int | None) -> None:
        """Send stored events after `last_seq` (up to `upto`), in batches."""
        while True:
            batch = await _events_between(self.run_id, self.last_seq, upto, CATCH_UP_BATCH)
            if not batch:
                return
            self.last_seq = batch[-1]["seq"]
            await self.send_json({"type": "events", "events": batch})
            if len(batch) < CATCH_UP_BATCH:
                return


class TeamConsumer(_Watched):
    """The current team's run and review changes, and its pending review count, for the nav and lists."""

    consumer = "TeamConsumer"

    async def connect(self) -> None:
        user = _signed_in(self.scope)
        team_id = await _current_team_id(user, self.scope.get("session")) if user is not None else None
        if team_id is None:
            await self.close(code=REJECTED)
            return
        self.team_id = team_id
        register_consumer_loop()
        self.group = team_group(team_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self._send_review_count()
        self._watch(user.pk, team_id)

    async def team_events(self, message: dict[str, Any]) -> None:
        """Run and review changes (`{"type": "team.events", "events": [...]}`)."""
        if not await self._may_send():
            return
        for event in message["events"]:
            await self.send_json({"type": "team_event", "event": event})
        await self._send_review_count()

    async def _tick(self) -> None:
        count = await _pending_reviews(self.team_id)  # (a team event whose publication was lost)
        if count != self.review_count:
            self.review_count = count
            await self.send_json({"type": "review_count", "count": count})

    async def _send_review_count(self) -> None:
        self.review_count = await _pending_reviews(self.team_id)
        await self.send_json({"type": "review_count", "count": self.review_count})

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

from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from authz.policy import Actor, allows, is_instance_operator
from authz.routes import WEBSOCKET_ROUTES
from dashboard.access import SESSION_KEY
from mcpgateway.whole_numbers import whole
from orchestrator.events import event_payload, register_consumer_loop, run_group, team_group
from orchestrator.models import Membership, ReviewItem, Run, RunEvent

CATCH_UP_BATCH = 200
REJECTED = 4403


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
    return ReviewItem.objects.filter(team_id=team_id, status=ReviewItem.Status.PENDING).count()


def _after(query_string: bytes) -> int:
    values = parse_qs(query_string.decode("latin-1")).get("after", ["0"])
    return whole(values[0]) or 0


def _signed_in(scope: dict[str, Any]) -> Any:
    user = scope.get("user")
    return user if user is not None and user.is_authenticated else None


class RunConsumer(AsyncJsonWebsocketConsumer):
    """One run's event stream: catch-up from `?after=`, then live, in seq order, without duplicates."""

    group: str | None = None

    async def connect(self) -> None:
        user = _signed_in(self.scope)
        self.run_id = int(self.scope["url_route"]["kwargs"]["run_id"])
        if user is None or not await _watchable_run(user, self.run_id):
            await self.close(code=REJECTED)
            return
        self.last_seq = _after(self.scope.get("query_string", b""))
        register_consumer_loop()
        self.group = run_group(self.run_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self._send_persisted(upto=None)
        await self.send_json({"type": "caught_up", "seq": self.last_seq})

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def run_events(self, message: dict[str, Any]) -> None:
        """Live events from the channel layer (`{"type": "run.events", "events": [...]}`)."""
        events = message["events"]
        persisted = [e for e in events if e.get("seq") is not None]
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


class TeamConsumer(AsyncJsonWebsocketConsumer):
    """The current team's run and review changes, and its pending review count, for the nav and lists."""

    group: str | None = None

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

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def team_events(self, message: dict[str, Any]) -> None:
        """Run and review changes (`{"type": "team.events", "events": [...]}`)."""
        for event in message["events"]:
            await self.send_json({"type": "team_event", "event": event})
        await self._send_review_count()

    async def _send_review_count(self) -> None:
        await self.send_json({"type": "review_count", "count": await _pending_reviews(self.team_id)})

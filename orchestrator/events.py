"""Run events: append (hash-chained, in the caller's transaction) and publish after commit.

Each event's hash covers its content and the previous event's hash, so a trace can be
verified end to end and a changed, removed or reordered event is detected.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import transaction

from config.sql_rows import JSONText
from orchestrator.models import Run, RunEvent

log = logging.getLogger(__name__)


def canonical(value: Any) -> str:
    """The JSON text an event's hash covers (and the store saves): keys sorted, and numbers and
    keys in the form PostgreSQL's `jsonb` gives them back (`_as_stored`), so the text made from
    the data read back is the text that was hashed, on either database."""
    try:
        return _dumps(value)
    except TypeError:  # keys of more than one type do not sort (e.g. 2 and "b")
        pass
    return _dumps(_as_stored(value))


def legacy_canonical(value: Any) -> str:
    """`canonical` as it was before `_as_stored`: the text events were hashed over until then."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _dumps(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    if "e+" in text or "-0.0" in text or _non_text_keys(value):
        # (only where a float may be written with an exponent or as -0.0, or a key is not text is
        # the value rebuilt: the check for keys walks the containers, the rebuild everything)
        text = json.dumps(_as_stored(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return text


def _non_text_keys(value: Any) -> bool:
    """Whether any mapping in `value` has a key that is not text (which JSON turns into text,
    sorted differently: 10 before 2 as text, after it as a number)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, inner in item.items():
                if type(key) is not str:
                    return True
                if isinstance(inner, (dict, list, tuple)):
                    stack.append(inner)
        elif isinstance(item, (list, tuple)):
            stack.extend(inner for inner in item if isinstance(inner, (dict, list, tuple)))
    return False


def _as_stored(value: Any) -> Any:
    """`value` as PostgreSQL's `jsonb` stores and returns it: a float written with an exponent
    (1e+16) comes back as the integer it denotes, -0.0 as 0.0, every key as text (as JSON
    writes it). SQLite keeps the text as given; this form is the same on both."""
    kind = type(value)
    if kind is float:
        if value == 0.0:
            return 0.0
        text = repr(value)
        return int(Decimal(text)) if "e+" in text else value
    if isinstance(value, dict):
        return {_key(k): _as_stored(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_stored(v) for v in value]
    return value


def _key(key: Any) -> Any:
    if type(key) is str:
        return key
    if key is True or key is False or key is None or isinstance(key, (int, float)):
        return json.dumps(key)  # what `json` makes of such a key
    return key  # (anything else: `json` refuses it, as before)


def event_hash(prev_hash: str, seq: int, type: str, step_key: str, data: dict[str, Any] | str, created_at: str) -> str:
    """sha256 over the previous hash and the event's canonical JSON.

    `data` may be given already in canonical form (the store reuses that text as the
    stored value); the body is exactly `canonical({...})` of the event either way.
    """
    data_text = data if isinstance(data, str) else canonical(data)
    return _chain_hash(prev_hash, seq, _canonical_name(type), _canonical_name(step_key), data_text, canonical(created_at))


def _chain_hash(prev_hash: str, seq: int, type_json: str, step_key_json: str, data_text: str, created_at_json: str) -> str:
    body = (f'{{"created_at":{created_at_json},"data":{data_text},"seq":{seq:d},'
            f'"step_key":{step_key_json},"type":{type_json}}}')
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


@functools.lru_cache(maxsize=4096)
def _canonical_name(value: str) -> str:
    """`canonical` of an event type or step key: a few distinct names, encoded once each."""
    return canonical(value)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


class ChainHead(Protocol):
    """Anything with a run's id and chain head (a Run, or the store's RunHead)."""

    pk: int
    last_seq: int
    last_hash: str


def build_events(run: ChainHead, items: Iterable[tuple[str, str, dict[str, Any]]], now: datetime) -> list[dict[str, Any]]:
    """Chain `(type, step_key, data)` items after the run's last event; advances `run.last_*`.

    Returns rows with the columns of RunEvent (`data` as its canonical JSON text, the value
    itself under `_data`); the caller saves them and the run's new head in its transaction.
    """
    rows = []
    stamp = canonical(_iso(now))  # one moment for the whole batch, encoded once
    for type, step_key, data in items:
        run.last_seq += 1
        text = canonical(data)
        digest = _chain_hash(run.last_hash, run.last_seq, _canonical_name(type), _canonical_name(step_key), text, stamp)
        rows.append({"run_id": run.pk, "seq": run.last_seq, "type": type, "step_key": step_key, "data": JSONText(text),
                     "created_at": now, "prev_hash": run.last_hash, "hash": digest, "_data": data})
        run.last_hash = digest
    return rows


def event_payload(event: RunEvent | dict[str, Any]) -> dict[str, Any]:
    """The JSON form of an event, as the live page, the API and the CLI see it."""
    row = event if isinstance(event, dict) else {f: getattr(event, f) for f in ("run_id", "seq", "type", "step_key", "data", "created_at", "hash")}
    return {
        "run_id": row["run_id"],
        "seq": row["seq"],
        "type": row["type"],
        "step_key": row["step_key"],
        "data": row.get("_data", row["data"]),
        "created_at": _iso(row["created_at"]),
        "hash": row["hash"],
    }


def run_group(run_id: int) -> str:
    return f"run-{run_id}"


def team_group(team_id: int) -> str:
    return f"team-{team_id}"


# The loop the websocket consumers of this process run on (daphne's). The in-memory channel
# layer's queues belong to it, so sends from other loops (the background runner) are handed
# over to it instead of touching its queues from another thread.
_consumer_loop: asyncio.AbstractEventLoop | None = None


def register_consumer_loop() -> None:
    """Called by consumers when they connect."""
    global _consumer_loop
    _consumer_loop = asyncio.get_running_loop()


def live_audience() -> bool:
    """Whether a live event published from here can reach anyone: a shared channel layer
    (Redis), or the in-process one with websocket consumers in this process."""
    layer = get_channel_layer()
    if layer is None:
        return False
    if isinstance(layer, InMemoryChannelLayer):
        return _consumer_loop is not None and not _consumer_loop.is_closed()
    return True


async def group_send(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    if not isinstance(layer, InMemoryChannelLayer):
        await layer.group_send(group, message)
        return
    target = _consumer_loop
    if target is None or target.is_closed():
        return  # no consumer ever connected in this process: nobody to tell
    if target is asyncio.get_running_loop():
        await layer.group_send(group, message)
    else:
        asyncio.run_coroutine_threadsafe(layer.group_send(group, message), target)


# How long one live publish may take, and how long publishing pauses after the channel
# layer failed (so a Redis outage costs each step nothing, not a timeout per event).
PUBLISH_TIMEOUT_S = 2.0
PUBLISH_PAUSE_S = 5.0
_publish_paused_until = 0.0


async def publish(payloads: list[dict[str, Any]], team_id: int | None = None) -> None:
    """Send events to the run's channel-layer group (live pages, SSE, metrics), and a
    summary of run and review changes to the team's group (lists and nav counts).

    Best effort: the events are already committed (the database is the truth) and live
    pages catch up from it, so a channel layer that fails or hangs is logged and skipped,
    never raised into the step or the request that committed them.
    """
    global _publish_paused_until
    if not payloads or time.monotonic() < _publish_paused_until or not live_audience():
        return  # nobody to tell: no task, no timeout (this runs after every commit)
    sends = [(run_group(payloads[0]["run_id"]), {"type": "run.events", "events": payloads})]
    if team_id is not None:
        changes = [p for p in payloads if p["type"].startswith(("run.", "review.", "step.waiting_review"))]
        if changes:
            sends.append((team_group(team_id), {"type": "team.events", "events": changes}))
    try:
        for group, message in sends:
            await asyncio.wait_for(group_send(group, message), PUBLISH_TIMEOUT_S)
    except Exception as exc:  # any channel-layer failure (TimeoutError included) is survivable
        _publish_paused_until = time.monotonic() + PUBLISH_PAUSE_S
        log.warning("live events not published (%s: %s); pausing live publishing for %.0fs; pages catch up from the database",
                    type(exc).__name__, exc, PUBLISH_PAUSE_S)


def send_event_on_commit(run: Run, type: str, data: dict[str, Any], step_key: str = "") -> RunEvent:
    """Append one event inside the current transaction; publish it once the transaction commits.

    For actions outside the engine (cancel, review decisions). Locks the run row so
    concurrent writers keep the chain linear. The data is redacted first (a reviewer's
    edit may repeat a secret), so the hash covers what is stored.
    """
    from django.utils import timezone

    from mcpgateway.redaction import get_redactor

    data = get_redactor(run.team_id).redact(data)

    locked = Run.objects.select_for_update().only("id", "last_seq", "last_hash").get(pk=run.pk)
    (row,) = build_events(locked, [(type, step_key, data)], timezone.now())
    event = RunEvent.objects.create(**{**{k: v for k, v in row.items() if k != "_data"}, "data": data})
    Run.objects.filter(pk=run.pk).update(last_seq=locked.last_seq, last_hash=locked.last_hash)
    run.last_seq, run.last_hash = locked.last_seq, locked.last_hash
    payload = event_payload(event)
    team_id = run.team_id
    transaction.on_commit(lambda: async_to_sync(publish)([payload], team_id))
    return event


def hash_matches(prev_hash: str, e: dict[str, Any], digest: str) -> bool:
    """Whether `digest` is the hash of event `e` (its payload form) after `prev_hash`: over the
    canonical text, or, for an event hashed before numbers and keys took their stored form
    (SQLite kept that older text), over the older text."""
    if event_hash(prev_hash, e["seq"], e["type"], e["step_key"], e["data"], e["created_at"]) == digest:
        return True
    if isinstance(e["data"], str):
        return False
    try:
        older = legacy_canonical(e["data"])
    except (TypeError, ValueError):  # keys of more than one type: never hashed that way
        return False
    return event_hash(prev_hash, e["seq"], e["type"], e["step_key"], older, e["created_at"]) == digest


@dataclass(slots=True)
class ChainReport:
    ok: bool
    count: int
    first_broken_seq: int | None = None
    reason: str = ""


def verify_chain(events: Iterable[RunEvent | dict[str, Any]]) -> ChainReport:
    """Recompute every hash in order; name the first event that does not verify."""
    prev_hash = ""
    expected_seq = 1
    count = 0
    for item in events:
        e = event_payload(item) if isinstance(item, RunEvent) else item
        prev = item.prev_hash if isinstance(item, RunEvent) else e.get("prev_hash", prev_hash)
        count += 1
        if e["seq"] != expected_seq:
            return ChainReport(False, count, e["seq"], f"expected event #{expected_seq}, found #{e['seq']} (missing or reordered)")
        if prev != prev_hash:
            return ChainReport(False, count, e["seq"], "prev_hash does not match the previous event's hash")
        if not hash_matches(prev_hash, e, e["hash"]):
            return ChainReport(False, count, e["seq"], "content does not match its hash (event was altered)")
        prev_hash = e["hash"]
        expected_seq += 1
    return ChainReport(True, count)

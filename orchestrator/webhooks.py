"""Webhooks: a pipeline's run events POSTed to a URL, signed, retried with backoff.

Deliveries are written in the same transaction as the change they announce (`enqueue`),
so none is lost or sent for a change that rolled back; `deliver_due` claims due ones with
a conditional update (safe with any number of senders) and sends them, concurrently (a
receiver that hangs holds no other delivery back). Each request
carries `X-Agentdeck-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">` keyed
by the webhook's secret; receivers check it with `verify_signature`. URLs pass the outbound
guard when saved and again at every connect (`mcpgateway.outbound`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from config.sql_rows import select_rows
from mcpgateway import redaction
from mcpgateway.crypto import encrypt
from mcpgateway.outbound import check_url
from orchestrator.actions.errors import ActionError
from orchestrator.models import Pipeline, Webhook, WebhookDelivery

log = logging.getLogger(__name__)
# Retried with backoff (2 s doubling, at most an hour apart) for about three hours in all: a
# receiver down for a few minutes (eight attempts gave up after 254 s) still gets the event.
MAX_ATTEMPTS = 14


def _timeout_s() -> float:
    return float(settings.WEBHOOK_TIMEOUT_S)


def _send_lease_s() -> float:
    """A claimed delivery is another sender's to retry once this has passed (a crash mid-send)."""
    return _timeout_s() * 3


# How long a rotated-out secret still signs deliveries, unless the rotation says otherwise.
ROTATION_OVERLAP = timedelta(hours=24)
MAX_ROTATION_OVERLAP = timedelta(days=7)


def _check_events(events: list[str]) -> list[str]:
    unknown = set(events) - set(Webhook.EVENTS)
    if unknown:
        raise ActionError(f"unknown events: {', '.join(sorted(unknown))}", "events")
    return list(dict.fromkeys(events))


def _check_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ActionError("the webhook URL must be http(s)", "url")
    check_url(url, "url")
    return url


def _new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(24)


def do_create_webhook(pipeline: Pipeline, url: str, events: list[str] | None = None) -> tuple[Webhook, str]:
    """A webhook and its signing secret (shown once). No `events`: all of them; an empty list is
    refused, as on update (it was widened to every event: a review)."""
    if events is not None and not events:
        raise ActionError("a webhook needs at least one event", "events")
    events = _check_events(list(Webhook.EVENTS) if events is None else events)
    _check_url(url)
    secret = _new_secret()
    webhook = Webhook.objects.create(pipeline=pipeline, url=url, events=events, secret_encrypted=encrypt(secret))
    transaction.on_commit(redaction.invalidate)  # the new secret is redacted from now on
    return webhook, secret


def do_update_webhook(webhook: Webhook, *, url: str | None = None, events: list[str] | None = None,
                      enabled: bool | None = None) -> Webhook:
    """Change a webhook's URL, events or switch. Deliveries already queued keep their event
    and go to the URL the webhook has when they are sent; while it is disabled they wait."""
    fields = []
    if url is not None:
        webhook.url = _check_url(url)
        fields.append("url")
    if events is not None:
        if not events:
            raise ActionError("a webhook needs at least one event (disable it to stop deliveries)", "events")
        webhook.events = _check_events(events)
        fields.append("events")
    if enabled is not None:
        webhook.enabled = enabled
        fields.append("enabled")
    if fields:
        webhook.save(update_fields=fields)
    return webhook


def do_delete_webhook(webhook: Webhook) -> None:
    """Delete a webhook with its deliveries, sent or not (a send in flight finishes; its
    outcome has no row left to be written to)."""
    webhook.delete()
    transaction.on_commit(redaction.invalidate)


def do_rotate_secret(webhook: Webhook, overlap: timedelta = ROTATION_OVERLAP) -> str:
    """A new signing secret (returned, shown once). The old one keeps signing for `overlap`
    — each delivery then carries one `v1=` per secret, as `verify_signature` accepts — so a
    receiver can move to the new secret without refusing a delivery; a zero overlap drops it
    at once (the old secret leaked). Both stay redacted."""
    if overlap < timedelta(0) or overlap > MAX_ROTATION_OVERLAP:
        raise ActionError(f"the overlap must be between 0 and {MAX_ROTATION_OVERLAP.days} days", "keep_previous_for_s")
    secret = _new_secret()
    with transaction.atomic():
        locked = Webhook.objects.select_for_update().get(pk=webhook.pk)  # two rotations at once: one previous each
        # Kept after its overlap (until the next rotation) so that it stays redacted; it signs
        # only until `previous_secret_until`.
        locked.previous_secret_encrypted = locked.secret_encrypted
        locked.previous_secret_until = timezone.now() + overlap if overlap > timedelta(0) else None
        locked.secret_encrypted = encrypt(secret)
        locked.save(update_fields=["secret_encrypted", "previous_secret_encrypted", "previous_secret_until"])
        transaction.on_commit(redaction.invalidate)
    webhook.refresh_from_db()
    return secret


def enqueue(pipeline_id: int, event: str, payload: dict[str, Any]) -> int:
    """Queue `event` for the pipeline's webhooks, inside the caller's transaction."""
    # Plain SQL: it runs in every finished run's last commit, and most pipelines have no webhook.
    rows = select_rows(Webhook, ("id", "events"), {"pipeline_id": pipeline_id, "enabled": True})
    hooks = [pk for pk, events in rows if event in (json.loads(events) if isinstance(events, str) else events)]
    now = timezone.now()
    WebhookDelivery.objects.bulk_create([
        WebhookDelivery(webhook_id=pk, event=event, payload={"event": event, **payload}, next_attempt_at=now) for pk in hooks
    ])
    return len(hooks)


def _digest(secret: str, body: bytes, timestamp: int) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str | list[str], body: bytes, timestamp: int | None = None) -> str:
    """`t=<unix>,v1=<hex>`, with one `v1=` per secret when given several (a rotation's overlap)."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    keys = [secret] if isinstance(secret, str) else secret
    return ",".join([f"t={timestamp}", *(f"v1={_digest(key, body, timestamp)}" for key in keys)])


def verify_signature(secret: str, body: bytes, header: str, tolerance_s: int = 300) -> bool:
    """What a receiver does: check that one of the `v1=` HMACs is the secret's and that the
    timestamp is recent."""
    timestamps, given = [], []
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep:
            return False
        if name == "t":
            timestamps.append(value)
        elif name == "v1":
            given.append(value)
    try:
        (timestamp,) = [int(value) for value in timestamps]
    except ValueError:  # no timestamp, two, or not a number
        return False
    if abs(time.time() - timestamp) > tolerance_s:
        return False
    expected = _digest(secret, body, timestamp).encode()
    # As bytes: `compare_digest` raises TypeError for a str that is not ASCII (`v1=é`).
    return any([hmac.compare_digest(expected, value.encode("utf-8", "replace")) for value in given])


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(2 ** attempts, 3600))


# A pass sends at most this many deliveries of one webhook, and of one receiver (scheme, host
# and port): a receiver that hangs or has a backlog takes a few of a pass's places, not all.
PER_WEBHOOK_PER_PASS = 5
PER_RECEIVER_PER_PASS = 10


def _receiver(url: str) -> str:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{(parts.hostname or '').lower()}:{parts.port or ''}"
    except ValueError:  # (a URL that cannot even be split fails at its send, as before)
        return url


def _due(limit: int) -> list[tuple[int, str, Any]]:
    """The due deliveries a pass takes: the longest-due first, at most `PER_WEBHOOK_PER_PASS` of
    one webhook and `PER_RECEIVER_PER_PASS` of one receiver, `limit` in all."""
    from django.db.models import F, Q, Window
    from django.db.models.functions import RowNumber

    now = timezone.now()
    rows = (WebhookDelivery.objects.filter(
        Q(status=WebhookDelivery.Status.PENDING) | Q(status=WebhookDelivery.Status.SENDING), next_attempt_at__lte=now,
        webhook__enabled=True)  # a disabled webhook's deliveries wait (they go if it is enabled again)
        .annotate(place=Window(RowNumber(), partition_by=[F("webhook_id")], order_by=[F("next_attempt_at").asc(), F("pk").asc()]))
        .filter(place__lte=PER_WEBHOOK_PER_PASS)
        .order_by("next_attempt_at", "pk")
        .values_list("pk", "status", "next_attempt_at", "webhook__url"))
    taken: list[tuple[int, str, Any]] = []
    per_receiver: dict[str, int] = {}
    for pk, status, seen, url in rows[: limit * 4]:  # (room for the ones a busy receiver leaves out)
        receiver = _receiver(url)
        if per_receiver.get(receiver, 0) >= PER_RECEIVER_PER_PASS:
            continue
        per_receiver[receiver] = per_receiver.get(receiver, 0) + 1
        taken.append((pk, status, seen))
        if len(taken) >= limit:
            break
    return taken


def deliver_due(limit: int = 50) -> int:
    """Send the deliveries that are due; returns how many were attempted.

    A sender claims a delivery with a lease: `sending` until `next_attempt_at`. One whose
    sender died mid-send (its lease ran out) is due again, so it is sent after the crash;
    receivers deduplicate on the body's `delivery` (signed; `X-Agentdeck-Delivery` repeats it
    unsigned), which stays the same on every attempt.

    The claimed deliveries are sent concurrently (one event loop per pass): they were sent one
    after another, so a receiver that never answers held every other team's deliveries behind
    it for its whole deadline each. None waits for a free slot — the pass's `limit` and the
    per-webhook and per-receiver shares (`_due`) bound how many are in flight — and each
    exchange's deadline counts from its claim, so it always ends within the lease.
    """
    claimed: list[tuple[WebhookDelivery, float]] = []
    for pk, status, seen in _due(limit):
        # The exchange's deadline, taken before its lease (three timeouts from now) starts: it
        # ends at least one timeout before another sender may take the delivery over.
        deadline = time.monotonic() + _total_s()
        won = WebhookDelivery.objects.filter(pk=pk, status=status, next_attempt_at=seen).update(
            status=WebhookDelivery.Status.SENDING, next_attempt_at=timezone.now() + timedelta(seconds=_send_lease_s()))
        if not won:
            continue
        if status == WebhookDelivery.Status.SENDING:
            log.warning("webhook delivery %s: its sender stopped mid-send; sending it again", pk)
        try:
            claimed.append((WebhookDelivery.objects.select_related("webhook").get(pk=pk), deadline))
        except WebhookDelivery.DoesNotExist:  # its webhook was deleted meanwhile
            continue
    if not claimed:
        return 0
    prepared = [_prepare(delivery) for delivery, _ in claimed]
    outcomes = asyncio.run(_exchange_all([(delivery, deadline, request)
                                          for (delivery, deadline), request in zip(claimed, prepared, strict=True)]))
    for (delivery, _), (status, error) in zip(claimed, outcomes, strict=True):
        try:
            _record(delivery, status, error)
        except Exception:  # (recording the outcome failed): the lease brings it back; the others go on
            log.exception("webhook delivery %s could not be finished", delivery.pk)
    return len(claimed)


MAX_RESPONSE_BYTES = 64 * 1024  # a receiver's answer is read this far (only its status matters)


def _total_s() -> float:
    """The whole request's deadline — connect, send, the answer read in full — within the send
    lease, so a sender always finishes before another may take its delivery over."""
    return _timeout_s() * 2


async def _post(url: str, body: bytes, headers: dict[str, str], deadline: float | None = None) -> int:
    """POST through the outbound guard under one deadline for the whole exchange (`deadline`, a
    `time.monotonic()` value, or `_total_s()` from now): the client's timeout bounds each read
    alone, so a receiver answering a byte at a time held a sender for ever (and, past its
    lease, the next sender too)."""
    from mcpgateway.outbound import guarded_async_client

    left = _total_s() if deadline is None else max(0.0, deadline - time.monotonic())
    async with asyncio.timeout(left):
        async with guarded_async_client(timeout=_timeout_s()) as client:
            async with client.stream("POST", url, content=body, headers=headers) as response:
                read = 0
                async for chunk in response.aiter_bytes():
                    read += len(chunk)
                    if read > MAX_RESPONSE_BYTES:
                        break
                return response.status_code


def _prepare(delivery: WebhookDelivery) -> tuple[bytes, dict[str, str]] | str:
    """The signed request, or why it cannot be made (a secret that no longer decrypts)."""
    # The delivery id is in the signed body: a receiver deduplicates on it, and a captured
    # request resent with another `X-Agentdeck-Delivery` header no longer looks new.
    try:
        body = json.dumps({**delivery.payload, "delivery": str(delivery.pk)}, sort_keys=True, default=str).encode()
        headers = {
            "Content-Type": "application/json", "User-Agent": "Agentdeck-Webhooks/1",
            "X-Agentdeck-Event": delivery.event, "X-Agentdeck-Delivery": str(delivery.pk),
            "X-Agentdeck-Signature": sign(delivery.webhook.signing_secrets(), body),
        }
    except Exception as exc:  # any failure is this attempt's
        return f"{type(exc).__name__}: {exc}"[:2000]
    return body, headers


async def _exchange(url: str, request: tuple[bytes, dict[str, str]] | str, deadline: float | None) -> tuple[int | None, str]:
    """One delivery's POST: its status and, unless it is a 2xx, the error."""
    if isinstance(request, str):
        return None, request
    status, error = None, ""
    try:
        # Through the outbound guard: the URL's host is resolved and checked again at connect,
        # and redirects are not followed (a 3xx is a failed delivery).
        status = await _post(url, *request, deadline=deadline)
        if not 200 <= status < 300:
            error = f"HTTP {status}"
    except TimeoutError:
        error = f"no complete answer within {_total_s():g}s"
    except Exception as exc:  # any failure is this attempt's (an invalid URL, a refused host)
        error = f"{type(exc).__name__}: {exc}"[:2000]
    return status, error


async def _exchange_all(batch: list[tuple[WebhookDelivery, float, Any]]) -> list[tuple[int | None, str]]:
    return list(await asyncio.gather(*(_exchange(delivery.webhook.url, request, deadline)
                                       for delivery, deadline, request in batch)))


def _record(delivery: WebhookDelivery, status: int | None, error: str) -> None:
    attempts = delivery.attempts + 1
    with transaction.atomic():
        if status is not None and 200 <= status < 300:
            fields = {"status": WebhookDelivery.Status.DELIVERED, "attempts": attempts, "response_status": status, "last_error": ""}
        elif attempts >= MAX_ATTEMPTS:
            fields = {"status": WebhookDelivery.Status.FAILED, "attempts": attempts, "response_status": status, "last_error": error}
        else:
            fields = {"status": WebhookDelivery.Status.PENDING, "attempts": attempts, "response_status": status,
                      "last_error": error, "next_attempt_at": timezone.now() + backoff(attempts)}
        # Only while this sender's lease is the delivery's: one that outlived it (a receiver
        # trickling its answer) must not overwrite the outcome of the sender that took over.
        mine = WebhookDelivery.objects.filter(pk=delivery.pk, status=WebhookDelivery.Status.SENDING,
                                              next_attempt_at=delivery.next_attempt_at).update(**fields)
    if not mine:
        log.warning("webhook delivery %s: finished after its send lease; the sender that took it over decides", delivery.pk)
    elif fields["status"] != WebhookDelivery.Status.DELIVERED:
        log.warning("webhook delivery %s to %s failed (%s), attempt %s", delivery.pk, delivery.webhook.url, error, attempts)


async def _send_forever(interval_s: float) -> None:
    import asyncio

    from asgiref.sync import sync_to_async

    from config.db_writer import releasing
    from mcpgateway.background import refused_work

    while True:
        try:
            await sync_to_async(releasing(deliver_due), thread_sensitive=False)()
        except Exception as exc:
            stop = refused_work(exc)
            if stop is not None:
                log.info("webhook sender stopped: %s", stop)
                return
            log.exception("webhook sender failed")
        await asyncio.sleep(interval_s)


_started = False


def start_sender(interval_s: float = 2.0) -> None:
    """Send due deliveries from this process (web, worker) every `interval_s` seconds."""
    global _started
    if not _started:
        from mcpgateway.background import submit

        _started = True
        submit(_send_forever(interval_s))


def webhook_secrets() -> list[tuple[int, str]]:
    """Every webhook's signing secret, with its pipeline's team (a source for `mcpgateway.redaction`)."""
    from mcpgateway.crypto import SecretDecryptError, decrypt

    found = []
    for team_id, *stored in Webhook.objects.values_list("pipeline__team_id", "secret_encrypted",
                                                        "previous_secret_encrypted"):
        for value in stored:
            try:
                if value:  # the rotated-out one too, after its overlap
                    found.append((team_id, decrypt(value)))
            except SecretDecryptError:
                continue
    return found

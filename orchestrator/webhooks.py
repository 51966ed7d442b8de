"""Webhooks: a pipeline's run events POSTed to a URL, signed, retried with backoff.

Deliveries are written in the same transaction as the change they announce (`enqueue`),
so none is lost or sent for a change that rolled back; `deliver_due` claims due ones with
a conditional update (safe with any number of senders) and sends them. Each request
carries `X-Agentdeck-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">` keyed
by the webhook's secret; receivers check it with `verify_signature`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
import urllib.error
import urllib.request
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from mcpgateway.crypto import encrypt
from orchestrator.actions.errors import ActionError
from orchestrator.models import Pipeline, Webhook, WebhookDelivery

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 8
TIMEOUT_S = 10


def do_create_webhook(pipeline: Pipeline, url: str, events: list[str] | None = None) -> tuple[Webhook, str]:
    """A webhook and its signing secret (shown once)."""
    events = events or list(Webhook.EVENTS)
    unknown = set(events) - set(Webhook.EVENTS)
    if unknown:
        raise ActionError(f"unknown events: {', '.join(sorted(unknown))}", "events")
    if not url.startswith(("http://", "https://")):
        raise ActionError("the webhook URL must be http(s)", "url")
    secret = "whsec_" + secrets.token_urlsafe(24)
    return Webhook.objects.create(pipeline=pipeline, url=url, events=events, secret_encrypted=encrypt(secret)), secret


def enqueue(pipeline_id: int, event: str, payload: dict[str, Any]) -> int:
    """Queue `event` for the pipeline's webhooks, inside the caller's transaction."""
    hooks = [h for h in Webhook.objects.filter(pipeline_id=pipeline_id, enabled=True) if event in h.events]
    now = timezone.now()
    WebhookDelivery.objects.bulk_create([
        WebhookDelivery(webhook=h, event=event, payload={"event": event, **payload}, next_attempt_at=now) for h in hooks
    ])
    return len(hooks)


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(secret: str, body: bytes, header: str, tolerance_s: int = 300) -> bool:
    """What a receiver does: check the HMAC and that the timestamp is recent."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance_s:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(2 ** attempts, 3600))


def deliver_due(limit: int = 50) -> int:
    """Send the deliveries that are due; returns how many were attempted."""
    now = timezone.now()
    due = list(WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now)
               .values_list("pk", flat=True)[:limit])
    sent = 0
    for pk in due:
        claimed = WebhookDelivery.objects.filter(pk=pk, status=WebhookDelivery.Status.PENDING).update(
            status=WebhookDelivery.Status.SENDING)
        if claimed:
            _send(WebhookDelivery.objects.select_related("webhook").get(pk=pk))
            sent += 1
    return sent


def _send(delivery: WebhookDelivery) -> None:
    body = json.dumps(delivery.payload, sort_keys=True, default=str).encode()
    request = urllib.request.Request(delivery.webhook.url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "Agentdeck-Webhooks/1",
        "X-Agentdeck-Event": delivery.event, "X-Agentdeck-Delivery": str(delivery.pk),
        "X-Agentdeck-Signature": sign(delivery.webhook.secret, body),
    })
    status, error = None, ""
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status, error = exc.code, f"HTTP {exc.code}"
    except OSError as exc:
        error = f"{type(exc).__name__}: {exc}"
    attempts = delivery.attempts + 1
    with transaction.atomic():
        if status is not None and 200 <= status < 300:
            fields = {"status": WebhookDelivery.Status.DELIVERED, "attempts": attempts, "response_status": status, "last_error": ""}
        elif attempts >= MAX_ATTEMPTS:
            fields = {"status": WebhookDelivery.Status.FAILED, "attempts": attempts, "response_status": status, "last_error": error}
        else:
            fields = {"status": WebhookDelivery.Status.PENDING, "attempts": attempts, "response_status": status,
                      "last_error": error, "next_attempt_at": timezone.now() + backoff(attempts)}
        WebhookDelivery.objects.filter(pk=delivery.pk).update(**fields)
    if fields["status"] != WebhookDelivery.Status.DELIVERED:
        log.warning("webhook delivery %s to %s failed (%s), attempt %s", delivery.pk, delivery.webhook.url, error, attempts)


async def _send_forever(interval_s: float) -> None:
    import asyncio

    from asgiref.sync import sync_to_async

    while True:
        try:
            await sync_to_async(deliver_due, thread_sensitive=False)()
        except Exception:
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

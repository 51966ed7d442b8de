"""The orchestrator's REST API (`/api/v1/`): agents, pipelines and versions, runs (start with
an Idempotency-Key, status, steps, events paged or streamed as SSE, cancel, resume), the
review queue and usage. Thin: authorise, call one query or action, shape the answer."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Sum
from django.db.models.functions import TruncDate
from django.http import HttpRequest, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from ninja import Body, Field, Header, Query, Router, Schema, Status

from config.db_writer import release_connection, releasing
from mcpgateway.api_caller import Caller
from mcpgateway.whole_numbers import is_whole, whole
from orchestrator.actions import (
    do_cancel_run,
    do_create_pipeline,
    do_decide_review,
    do_resume_run,
    do_save_pipeline_version,
    do_start_run,
)
from orchestrator.actions.agents import do_save_agent
from orchestrator.actions.credentials import do_delete_credential, do_save_credential
from orchestrator.actions.errors import ActionError, Conflict
from orchestrator.actions.limits import do_delete_limit, do_save_limit
from orchestrator.actions.reviews import do_claim_review
from orchestrator.events import event_payload, register_consumer_loop, run_group
from orchestrator.models import (
    FINISHED_RUN_STATUSES,
    Agent,
    IdempotencyKey,
    Limit,
    Membership,
    ModelCredential,
    Pipeline,
    ReviewItem,
    ReviewReason,
    Run,
    RunEvent,
    RunStatus,
    Team,
    UsageRecord,
    Webhook,
)
from orchestrator.schemas import (
    AgentIn,
    AgentOut,
    AgentPatch,
    CredentialIn,
    CredentialOut,
    CredentialPatch,
    DecisionIn,
    EventPage,
    LimitIn,
    LimitOut,
    PipelineIn,
    PipelineOut,
    ReviewOut,
    RunIn,
    RunOut,
    StepOut,
    TraceVerifyOut,
    UsageOut,
    VersionIn,
    VersionOut,
    WebhookIn,
    WebhookOut,
    WebhookPatch,
)
from orchestrator.webhooks import (
    do_create_webhook,
    do_delete_webhook,
    do_rotate_secret,
    do_update_webhook,
)

router = Router()


def caller(request: HttpRequest) -> Caller:
    return request.auth  # type: ignore[return-value]


# --- agents -------------------------------------------------------------------------------

@router.get("/agents", response=list[AgentOut], tags=["agents"])
def list_agents(request: HttpRequest):
    return Agent.objects.filter(team_id=caller(request).require("read").team_id, internal=False)


@router.post("/agents", response={201: AgentOut}, tags=["agents"])
def create_agent(request: HttpRequest, body: AgentIn):
    c = caller(request).require("admin", "builder")
    return Status(201, do_save_agent(Team.objects.get(pk=c.team_id), body.dict(), operator=c.operator))


@router.get("/agents/{agent_id}", response=AgentOut, tags=["agents"])
def get_agent(request: HttpRequest, agent_id: int):
    return get_object_or_404(Agent, pk=agent_id, team_id=caller(request).require("read").team_id)


@router.patch("/agents/{agent_id}", response=AgentOut, tags=["agents"])
def update_agent(request: HttpRequest, agent_id: int, body: AgentPatch):
    c = caller(request).require("admin", "builder")
    agent = get_object_or_404(Agent, pk=agent_id, team_id=c.team_id)
    changes = {k: v for k, v in body.dict(exclude_unset=True).items() if v is not None or k in ("temperature", "credential")}
    return do_save_agent(agent.team, changes, agent, operator=c.operator)


@router.delete("/agents/{agent_id}", response={204: None}, tags=["agents"])
def delete_agent(request: HttpRequest, agent_id: int):
    agent = get_object_or_404(Agent, pk=agent_id, team_id=caller(request).require("admin", "builder").team_id)
    agent.delete()
    return Status(204, None)


# --- model credentials ------------------------------------------------------------------

def _credential_out(credential: ModelCredential, team_id: int) -> dict[str, Any]:
    return {"id": credential.pk, "name": credential.name, "provider": credential.provider,
            "base_url": credential.base_url, "shared": credential.team_id != team_id,
            "agents": sorted(a.name for a in credential.agents.all() if a.team_id == team_id and not a.internal),
            "updated_at": credential.updated_at}


@router.get("/credentials", response=list[CredentialOut], tags=["credentials"])
def list_credentials(request: HttpRequest):
    """The team's model credentials and those an instance operator shares with it; keys never."""
    team_id = caller(request).require("read").team_id
    return [_credential_out(c, team_id) for c in ModelCredential.usable_by(team_id).prefetch_related("agents")]


@router.post("/credentials", response={201: CredentialOut}, tags=["credentials"])
def create_credential(request: HttpRequest, body: CredentialIn):
    team_id = caller(request).require("admin", "owner").team_id
    return Status(201, _credential_out(do_save_credential(Team.objects.get(pk=team_id), body.dict()), team_id))


@router.get("/credentials/{credential_id}", response=CredentialOut, tags=["credentials"])
def get_credential(request: HttpRequest, credential_id: int):
    team_id = caller(request).require("read").team_id
    return _credential_out(get_object_or_404(ModelCredential.usable_by(team_id), pk=credential_id), team_id)


@router.patch("/credentials/{credential_id}", response=CredentialOut, tags=["credentials"])
def update_credential(request: HttpRequest, credential_id: int, body: CredentialPatch):
    """Rename, change the base URL, or rotate the key (write-only)."""
    team_id = caller(request).require("admin", "owner").team_id
    credential = get_object_or_404(ModelCredential, pk=credential_id, team_id=team_id)
    changes = {k: v for k, v in body.dict(exclude_unset=True).items() if v is not None or k == "base_url"}
    return _credential_out(do_save_credential(credential.team, changes, credential), team_id)


@router.delete("/credentials/{credential_id}", response={204: None}, tags=["credentials"])
def delete_credential(request: HttpRequest, credential_id: int):
    team_id = caller(request).require("admin", "owner").team_id
    do_delete_credential(get_object_or_404(ModelCredential, pk=credential_id, team_id=team_id))
    return Status(204, None)


# --- pipelines ----------------------------------------------------------------------------

def _pipeline_out(p: Pipeline) -> dict[str, Any]:
    latest = p.latest_version()
    return {"id": p.pk, "name": p.name, "slug": p.slug, "description": p.description,
            "latest_version": latest.number if latest else None}


@router.get("/pipelines", response=list[PipelineOut], tags=["pipelines"])
def list_pipelines(request: HttpRequest):
    team_id = caller(request).require("read").team_id
    return [_pipeline_out(p) for p in Pipeline.objects.filter(team_id=team_id, internal=False).prefetch_related("versions")]


@router.post("/pipelines", response={201: PipelineOut}, tags=["pipelines"])
def create_pipeline(request: HttpRequest, body: PipelineIn):
    c = caller(request).require("admin", "builder")
    pipeline = do_create_pipeline(Team.objects.get(pk=c.team_id), body.name, body.spec, _user(c), body.description, body.slug)
    return Status(201, _pipeline_out(pipeline))


@router.get("/pipelines/{pipeline_id}", response=PipelineOut, tags=["pipelines"])
def get_pipeline(request: HttpRequest, pipeline_id: int):
    return _pipeline_out(get_object_or_404(Pipeline, pk=pipeline_id, team_id=caller(request).require("read").team_id))


@router.get("/pipelines/{pipeline_id}/versions", response=list[VersionOut], tags=["pipelines"])
def list_versions(request: HttpRequest, pipeline_id: int):
    pipeline = get_object_or_404(Pipeline, pk=pipeline_id, team_id=caller(request).require("read").team_id)
    return pipeline.versions.order_by("-number")


@router.post("/pipelines/{pipeline_id}/versions", response={201: VersionOut}, tags=["pipelines"])
def create_version(request: HttpRequest, pipeline_id: int, body: VersionIn):
    c = caller(request).require("admin", "builder")
    pipeline = get_object_or_404(Pipeline, pk=pipeline_id, team_id=c.team_id)
    return Status(201, do_save_pipeline_version(pipeline, body.spec, _user(c), body.note, base_version=body.base_version))


@router.get("/pipelines/{pipeline_id}/versions/{number}", response=VersionOut, tags=["pipelines"])
def get_version(request: HttpRequest, pipeline_id: int, number: int):
    pipeline = get_object_or_404(Pipeline, pk=pipeline_id, team_id=caller(request).require("read").team_id)
    return get_object_or_404(pipeline.versions, number=number)


def _webhook_out(hook: Webhook, secret: str | None = None) -> dict[str, Any]:
    until = hook.previous_secret_until
    return {"id": hook.pk, "url": hook.url, "events": hook.events, "enabled": hook.enabled, "secret": secret,
            "previous_secret_until": until if until and until > timezone.now() else None}


def _team_webhook(request: HttpRequest, pipeline_id: int, webhook_id: int) -> Webhook:
    team_id = caller(request).require("admin", "builder").team_id
    return get_object_or_404(Webhook, pk=webhook_id, pipeline_id=pipeline_id, pipeline__team_id=team_id)


@router.get("/pipelines/{pipeline_id}/webhooks", response=list[WebhookOut], tags=["pipelines"])
def list_webhooks(request: HttpRequest, pipeline_id: int):
    pipeline = get_object_or_404(Pipeline, pk=pipeline_id, team_id=caller(request).require("read", "builder").team_id)
    return [_webhook_out(h) for h in pipeline.webhooks.order_by("id")]


@router.post("/pipelines/{pipeline_id}/webhooks", response={201: WebhookOut}, tags=["pipelines"])
def create_webhook(request: HttpRequest, pipeline_id: int, body: WebhookIn):
    """Deliveries carry `X-Agentdeck-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">` keyed by `secret`."""
    pipeline = get_object_or_404(Pipeline, pk=pipeline_id, team_id=caller(request).require("admin", "builder").team_id)
    hook, secret = do_create_webhook(pipeline, body.url, list(body.events))
    return Status(201, _webhook_out(hook, secret))


@router.patch("/pipelines/{pipeline_id}/webhooks/{webhook_id}", response=WebhookOut, tags=["pipelines"])
def update_webhook(request: HttpRequest, pipeline_id: int, webhook_id: int, body: WebhookPatch):
    """Change the URL or events, or switch it off (`enabled: false`: deliveries wait) and on."""
    hook = _team_webhook(request, pipeline_id, webhook_id)
    changes = body.dict(exclude_unset=True)
    empty = [name for name, value in changes.items() if value is None]
    if empty:
        raise ActionError(f"{empty[0]}: give a value, or leave it out to keep it", empty[0])
    return _webhook_out(do_update_webhook(hook, **changes))


@router.delete("/pipelines/{pipeline_id}/webhooks/{webhook_id}", response={204: None}, tags=["pipelines"])
def delete_webhook(request: HttpRequest, pipeline_id: int, webhook_id: int):
    """Delete it and its deliveries, sent or waiting."""
    do_delete_webhook(_team_webhook(request, pipeline_id, webhook_id))
    return Status(204, None)


@router.post("/pipelines/{pipeline_id}/webhooks/{webhook_id}/rotate-secret", response=WebhookOut, tags=["pipelines"])
def rotate_webhook_secret(request: HttpRequest, pipeline_id: int, webhook_id: int,
                          keep_previous_for_s: int = Query(86400, ge=0, le=7 * 86400)):
    """A new `secret` (shown once). The previous one signs too for `keep_previous_for_s` seconds
    (default a day; 0 drops it at once): each delivery then carries a `v1=` for each."""
    hook = _team_webhook(request, pipeline_id, webhook_id)
    secret = do_rotate_secret(hook, timedelta(seconds=keep_previous_for_s))
    return _webhook_out(hook, secret)


# --- runs ---------------------------------------------------------------------------------

def _run_out(run: Run) -> dict[str, Any]:
    version = run.pipeline_version
    return {"id": run.pk, "pipeline": version.pipeline_id, "version": version.number, "status": run.status,
            "input": run.input, "output": run.output, "error": run.error, "input_tokens": run.input_tokens,
            "output_tokens": run.output_tokens, "cost_usd": run.cost_usd, "created_at": run.created_at,
            "started_at": run.started_at, "finished_at": run.finished_at}


def _user(c: Caller):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.filter(pk=c.user_id).first() if c.user_id else None


def _team_run(c: Caller, run_id: int) -> Run:
    return get_object_or_404(Run.objects.select_related("pipeline_version"), pk=run_id, team_id=c.team_id)


@router.get("/runs", response=list[RunOut], tags=["runs"])
def list_runs(request: HttpRequest, status: str | None = None, pipeline: int | None = None,
              before: int | None = Query(None, description="Keyset cursor: runs with a smaller id."),
              limit: int = Query(50, ge=1, le=200)):
    rows = Run.objects.filter(team_id=caller(request).require("read").team_id).select_related("pipeline_version")
    if status:
        if status not in RunStatus.values:  # (a typo listed nothing, as if no run had that status)
            raise ActionError(f"unknown status {status[:40]!r}; one of {', '.join(RunStatus.values)}", "status")
        rows = rows.filter(status=status)
    if pipeline:
        rows = rows.filter(pipeline_version__pipeline_id=pipeline)
    if before:
        rows = rows.filter(pk__lt=before)
    return [_run_out(r) for r in rows.order_by("-id")[:limit]]


@router.post("/runs", response={201: RunOut, 200: RunOut}, tags=["runs"])
def start_run(request: HttpRequest, body: RunIn, idempotency_key: str | None = Header(None, alias="Idempotency-Key")):
    """Start a run. With an `Idempotency-Key`, repeating the request returns the same run (200)."""
    c = caller(request).require("run", "builder")
    pipeline = get_object_or_404(Pipeline, pk=body.pipeline, team_id=c.team_id)
    version = pipeline.versions.filter(number=body.version).first() if body.version else pipeline.latest_version()
    if version is None:
        raise ActionError(f"pipeline {pipeline.pk} has no version {body.version}", "version")
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= 200:
        raise ActionError("Idempotency-Key must be 1 to 200 characters", "Idempotency-Key")
    digest = hashlib.sha256(json.dumps(body.dict(), sort_keys=True, default=str).encode()).hexdigest()
    if idempotency_key:
        existing = IdempotencyKey.objects.filter(team_id=c.team_id, caller=c.principal_key, key=idempotency_key).first()
        if existing is not None:
            return _replay(existing, digest)
    try:
        with transaction.atomic():
            if idempotency_key:
                # The lock every start takes, taken before the key is looked at again: a retry
                # sent while the first request was starting found no key, waited on this lock,
                # and was refused by a concurrent-runs limit (429) for the very run it asked for
                # (a review). Now it waits here and finds the first request's key.
                Team.objects.select_for_update().filter(pk=c.team_id).first()
                existing = IdempotencyKey.objects.filter(team_id=c.team_id, caller=c.principal_key,
                                                         key=idempotency_key).first()
                if existing is not None:
                    return _replay(existing, digest)
            run = do_start_run(version, body.input, _user(c), api_key_id=c.api_key_id)
            if idempotency_key:
                IdempotencyKey.objects.create(team_id=c.team_id, caller=c.principal_key, key=idempotency_key,
                                              request_hash=digest, run=run)
    except IntegrityError:  # a concurrent request with the same key won
        existing = IdempotencyKey.objects.get(team_id=c.team_id, caller=c.principal_key, key=idempotency_key)
        return _replay(existing, digest)
    return Status(201, _run_out(run))


def _replay(existing: IdempotencyKey, digest: str):
    if existing.request_hash != digest:
        raise Conflict("this Idempotency-Key was used for a different request", "Idempotency-Key")
    return Status(200, _run_out(Run.objects.select_related("pipeline_version").get(pk=existing.run_id)))


@router.get("/runs/{run_id}", response=RunOut, tags=["runs"])
def get_run(request: HttpRequest, run_id: int):
    return _run_out(_team_run(caller(request).require("read"), run_id))


@router.get("/runs/{run_id}/steps", response=list[StepOut], tags=["runs"])
def list_steps(request: HttpRequest, run_id: int):
    return _team_run(caller(request).require("read"), run_id).steps.order_by("id")


@router.get("/runs/{run_id}/events", response=EventPage, tags=["runs"])
def list_events(request: HttpRequest, run_id: int, after: int = Query(0, ge=0), limit: int = Query(200, ge=1, le=1000)):
    run = _team_run(caller(request).require("read"), run_id)
    events = list(RunEvent.objects.filter(run=run, seq__gt=after).order_by("seq")[: limit + 1])
    more = len(events) > limit
    events = events[:limit]
    return {"events": events, "next_after": events[-1].seq if more else None}


@router.get("/runs/{run_id}/events/stream", tags=["runs"],
            openapi_extra={"responses": {200: {"description": "Server-Sent Events", "content": {"text/event-stream": {}}}}})
async def stream_events(request: HttpRequest, run_id: int, after: int = Query(0, ge=0)):
    """The run's events as Server-Sent Events, from `after` (or `Last-Event-ID`) on, live until the run stops."""
    c = caller(request).require("read")
    # The authentication ran on the request's own thread (django-ninja calls a sync `auth` with a
    # thread-sensitive `sync_to_async`): hand that thread's connection back now, or it stays out
    # of the pool for as long as the stream is open.
    await sync_to_async(release_connection)()
    run = await _stream_read(_team_run, c, run_id)
    last_id = request.headers.get("Last-Event-ID")
    start = whole(last_id) if is_whole(last_id) else after
    return StreamingHttpResponse(_sse(run.pk, start, c), content_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _stream_read(func: Any, *args: Any) -> Any:
    """`func(*args)` for an event stream: on a pool thread that hands its pooled connection back
    when `func` returns. A plain `sync_to_async` runs on the request's own thread, whose
    connection goes back only when the response ends: each open stream held one of the web
    process's `DB_POOL_MAX` connections, and a few streams made every other request wait
    `DB_POOL_TIMEOUT_S` and answer 503."""
    return await sync_to_async(releasing(func), thread_sensitive=False)(*args)


LAYER_WAIT_S = 2.0  # how long the stream waits on the channel layer before it polls the database instead
ACCESS_MAX_AGE_S = 1.0  # live events go out only under an access check at most this old


async def _subscribe(run_id: int) -> tuple[Any, str | None]:
    """The channel layer and a channel in the run's group, or (None, None) when the layer is
    off or failing: the stream then polls the database (a Redis that was down made the stream
    send nothing, not even its status line, and hold the connection)."""
    layer = get_channel_layer()
    if layer is None:
        return None, None
    try:
        channel = await asyncio.wait_for(layer.new_channel(), LAYER_WAIT_S)
        register_consumer_loop()
        await asyncio.wait_for(layer.group_add(run_group(run_id), channel), LAYER_WAIT_S)
    except Exception as exc:  # the layer's own failure, whatever its kind: polling still serves the stream
        logging.getLogger(__name__).warning("run %s events: channel layer unavailable (%s); polling", run_id, exc)
        return None, None
    return layer, channel


def _still_allowed(c: Caller) -> bool:
    """Whether the stream's caller may still read the team's runs: the key not revoked, its
    user (or the session's) still active and still a member (a stream opened before a
    revocation kept streaming for as long as it stayed open)."""
    from django.contrib.auth import get_user_model

    from mcpgateway.models import ApiKey
    from orchestrator.api_auth import caller_for_key

    if c.api_key_id is not None:
        key = ApiKey.objects.select_related("user").filter(pk=c.api_key_id, revoked_at__isnull=True).first()
        if key is None or (key.user is not None and not key.user.is_active):
            return False
        return caller_for_key(key) is not None
    return (c.user_id is not None and get_user_model().objects.filter(pk=c.user_id, is_active=True).exists()
            and Membership.objects.filter(team_id=c.team_id, user_id=c.user_id).exists())


async def _sse(run_id: int, after: int, c: Caller | None = None) -> AsyncIterator[str]:
    """Subscribe first, then catch up from the database, then forward live events (deduplicated
    by seq); while the channel layer is off or failing, poll the database instead.

    A live event past the next seq first sends the ones between from the database (another
    writer's events published after it: they were skipped for good). Every `LIVE_RECHECK_S`
    without a live message, the stream catches up from the database (events whose
    publication was lost: the stream used to end on the run's finished status without its
    last events) and re-checks its caller's access."""
    layer, channel = await _subscribe(run_id)
    subscribed = layer, channel
    last = after
    checked_at = time.monotonic()

    async def allowed() -> bool:
        """Access, re-checked when the last check is older than a second: before live events go
        out, not only at a quiet keep-alive (a busy run kept streaming to a revoked key)."""
        nonlocal checked_at
        if c is None or time.monotonic() - checked_at < ACCESS_MAX_AGE_S:
            return True
        checked_at = time.monotonic()
        return await _stream_read(_still_allowed, c)

    try:
        def backlog(upto: int | None = None) -> tuple[list[dict[str, Any]], str]:
            # The status first: events committed with a finished status are then in the rows.
            status = Run.objects.values_list("status", flat=True).get(pk=run_id)
            events = RunEvent.objects.filter(run_id=run_id, seq__gt=last).order_by("seq")
            if upto is not None:
                events = events.filter(seq__lte=upto)
            return [event_payload(e) for e in events], status

        rows, status = await _stream_read(backlog)
        for payload in rows:
            last = payload["seq"]
            yield _sse_frame(payload)
        while status not in FINISHED_RUN_STATUSES and status != "waiting_review":
            if layer is None or channel is None:
                await asyncio.sleep(0.5)
                if not await allowed():
                    return
                rows, status = await _stream_read(backlog)
                for payload in rows:
                    last = payload["seq"]
                    yield _sse_frame(payload)
                continue
            try:
                message = await asyncio.wait_for(layer.receive(channel), timeout=settings.LIVE_RECHECK_S)
            except TimeoutError:
                yield ": keep-alive\n\n"
                checked_at = 0.0  # (a full re-check at each quiet spell)
                if not await allowed():
                    return
                rows, status = await _stream_read(backlog)
                for payload in rows:
                    last = payload["seq"]
                    yield _sse_frame(payload)
                continue
            except Exception as exc:  # the layer failed mid-stream: go on from the database
                logging.getLogger(__name__).warning("run %s events: channel layer failed (%s); polling", run_id, exc)
                layer = channel = None
                continue
            if not await allowed():
                return
            events = message.get("events", [])
            persisted = [e for e in events if e.get("seq") is not None]
            if persisted and persisted[0]["seq"] > last + 1:
                rows, _ = await _stream_read(backlog, persisted[0]["seq"] - 1)
                for payload in rows:
                    last = payload["seq"]
                    yield _sse_frame(payload)
            for payload in events:
                if payload.get("seq") is None:
                    yield _sse_frame(payload)
                elif payload["seq"] > last:
                    last = payload["seq"]
                    yield _sse_frame(payload)
                    if payload["type"] in ("run.succeeded", "run.failed", "run.cancelled", "run.waiting_review"):
                        status = payload["type"].split(".", 1)[1]
    finally:
        if subscribed[0] is not None and subscribed[1] is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(subscribed[0].group_discard(run_group(run_id), subscribed[1]), LAYER_WAIT_S)


def _sse_frame(payload: dict[str, Any]) -> str:
    head = f"id: {payload['seq']}\n" if payload.get("seq") is not None else ""
    return f"{head}event: {payload['type']}\ndata: {json.dumps(payload, default=str)}\n\n"


@router.post("/runs/{run_id}/cancel", response=RunOut, tags=["runs"])
def cancel_run(request: HttpRequest, run_id: int):
    c = caller(request).require("run", "builder")
    return _run_out(do_cancel_run(_team_run(c, run_id), _user(c)))


@router.post("/runs/{run_id}/resume", response=RunOut, tags=["runs"])
def resume_run(request: HttpRequest, run_id: int):
    c = caller(request).require("run", "builder")
    return _run_out(do_resume_run(_team_run(c, run_id), _user(c)))


class ForkIn(Schema):
    step: str = Field(..., min_length=1, max_length=200, description="The step instance key, e.g. `coder#2`.")
    output: Any = Field(None, description="An edited output for that step (agent and review steps); "
                                          "omit it to run the step again.")


@router.post("/runs/{run_id}/fork", response={201: RunOut}, tags=["runs"])
def fork_run(request: HttpRequest, run_id: int, body: ForkIn):
    """Start a new run that reuses this run's results before `step` (no model or tool call
    repeated), with `output` as that step's output if given (orchestrator.actions.fork)."""
    from orchestrator.actions.fork import do_fork_run

    c = caller(request).require("run", "builder")
    run = do_fork_run(_team_run(c, run_id), body.step, body.output, _user(c), api_key_id=c.api_key_id)
    return Status(201, _run_out(Run.objects.select_related("pipeline_version").get(pk=run.pk)))


# --- review queue ---------------------------------------------------------------------------

def _review_out(item: ReviewItem, approvals: dict[int, Any] | None = None) -> dict[str, Any]:
    return {"id": item.pk, "run": item.run_id, "step_key": item.step_key, "reason": item.reason, "status": item.status,
            "context": item.context, "decision": item.decision, "assigned_to": item.assigned_to_id,
            "decided_by": item.decided_by_id, "created_at": item.created_at, "decided_at": item.decided_at,
            "approval": _approvals_of([item]).get(item.pk) if approvals is None else approvals.get(item.pk)}


def _approvals_of(items: list[ReviewItem]) -> dict[int, dict[str, Any]]:
    """The tool call each approval item asks about (tool, arguments as stored: redacted), by
    item: what the dashboard shows the reviewer, so that a reviewer deciding over the API does
    not approve a call unseen (a review). One query for the page."""
    from mcpgateway.models import ToolApproval

    wanted = {item.pk: item.context.get("approval_id") for item in items
              if item.reason == ReviewReason.APPROVAL and isinstance(item.context.get("approval_id"), int)}
    if not wanted:
        return {}
    team_ids = {item.team_id for item in items}
    rows = {a.pk: a for a in ToolApproval.objects.filter(pk__in=set(wanted.values()), team_id__in=team_ids)}
    return {item_id: {"id": row.pk, "tool": row.tool_name, "arguments": row.arguments, "status": row.status}
            for item_id, approval_id in wanted.items() if (row := rows.get(approval_id)) is not None}


@router.get("/reviews", response=list[ReviewOut], tags=["reviews"])
def list_reviews(request: HttpRequest, status: str = "pending", limit: int = Query(100, ge=1, le=500)):
    team_id = caller(request).require("read").team_id
    if status not in ReviewItem.Status.values:
        raise ActionError(f"unknown status {status[:40]!r}; one of {', '.join(ReviewItem.Status.values)}", "status")
    items = list(ReviewItem.objects.filter(team_id=team_id, status=status).order_by("-id")[:limit])
    approvals = _approvals_of(items)
    return [_review_out(i, approvals) for i in items]


@router.post("/reviews/{item_id}/claim", response=ReviewOut, tags=["reviews"])
def claim_review(request: HttpRequest, item_id: int):
    c = caller(request).require("run", "reviewer")
    item = get_object_or_404(ReviewItem, pk=item_id, team_id=c.team_id)
    if c.user_id is None:
        raise ActionError("a service account cannot claim review items", "user")
    # The action's path: the item locked and checked, and `review.claimed` on the run's trace
    # (an update here of its own used to skip the event).
    return _review_out(do_claim_review(item, _user(c)))


@router.post("/reviews/{item_id}/decide", response=ReviewOut, tags=["reviews"])
def decide_review(request: HttpRequest, item_id: int, body: DecisionIn):
    """approve (optionally with an edited `output`), reject, retry, or resume (optionally with `raise_budget`)."""
    c = caller(request).require("run", "reviewer")
    item = get_object_or_404(ReviewItem, pk=item_id, team_id=c.team_id)
    return _review_out(do_decide_review(item, _user(c), body.action, body.output, body.note, body.raise_budget,
                                        api_key_id=c.api_key_id))


# --- limits -------------------------------------------------------------------------------

@router.get("/limits", response=list[LimitOut], tags=["limits"])
def list_limits(request: HttpRequest):
    return Limit.objects.filter(team_id=caller(request).require("read").team_id)


@router.post("/limits", response={201: LimitOut}, tags=["limits"])
def create_limit(request: HttpRequest, body: LimitIn):
    c = caller(request).require("admin", "builder")
    return Status(201, do_save_limit(Team.objects.get(pk=c.team_id), body.scope, body.kind, body.value, body.target))


@router.put("/limits/{limit_id}", response=LimitOut, tags=["limits"])
def update_limit(request: HttpRequest, limit_id: int, body: LimitIn):
    c = caller(request).require("admin", "builder")
    limit = get_object_or_404(Limit, pk=limit_id, team_id=c.team_id)
    return do_save_limit(Team.objects.get(pk=c.team_id), body.scope, body.kind, body.value, body.target, limit=limit)


@router.delete("/limits/{limit_id}", response={204: None}, tags=["limits"])
def delete_limit(request: HttpRequest, limit_id: int):
    do_delete_limit(get_object_or_404(Limit, pk=limit_id, team_id=caller(request).require("admin", "builder").team_id))
    return Status(204, None)


# --- usage ---------------------------------------------------------------------------------

@router.get("/usage", response=list[UsageOut], tags=["usage"])
def usage(request: HttpRequest, days: int = Query(30, ge=1, le=366), agent: int | None = None):
    team_id = caller(request).require("read").team_id
    rows = UsageRecord.objects.filter(team_id=team_id, created_at__gte=timezone.now() - timedelta(days=days))
    if agent:
        rows = rows.filter(agent_id=agent)
    grouped = rows.annotate(day=TruncDate("created_at")).values("day").annotate(
        input_tokens=Sum("input_tokens"), output_tokens=Sum("output_tokens"), cost_usd=Sum("cost_usd"), calls=Count("id"),
    ).order_by("day")
    return [{**g, "day": g["day"].isoformat()} for g in grouped]


@router.get("/runs/{run_id}/trace", response=dict[str, Any], tags=["traces"])
def run_trace(request: HttpRequest, run_id: int):
    """The run's signed, self-contained trace (see `POST /traces/verify`)."""
    from orchestrator.trace_files import export_trace

    run = _team_run(caller(request).require("read"), run_id)
    return export_trace(Run.objects.select_related("pipeline_version__pipeline").get(pk=run.pk))


TRACE_BODY = Body(..., description="A trace file as exported.")


@router.post("/traces/verify", response=TraceVerifyOut, tags=["traces"])
def verify_trace_file(request: HttpRequest, body: dict[str, Any] = TRACE_BODY):
    """Check a trace file: event chain, counts, chain head and the instance's signature."""
    from orchestrator.trace_files import verify_trace

    caller(request).require("read")
    return verify_trace(body).to_dict()

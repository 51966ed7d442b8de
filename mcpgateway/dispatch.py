"""The dispatch path: the only way a tool is called.

principal (already authenticated) → grant check → rate limits (per principal and tool,
and per tool) → approval when the grant asks for it → upstream call with a timeout →
sanitise (size cap, secret redaction) → one audit row. Denials and errors are audited too.

A call that reaches its upstream is audited twice on the same row: `started` (committed
before the request leaves, with the call's idempotency key, which is sent in `_meta`) and
its outcome after. A crash in between leaves the row `started`; the run's resume marks it
`interrupted` (`take_interrupted_calls`) and decides whether the call may be made again.
`Gateway` implements the `Toolbox` interface the engine and the MCP endpoint use.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from config import tracing
from config.db_writer import releasing, run_write
from config.sql_rows import insert_rows, update_row
from mcpgateway import catalogue, idempotency
from mcpgateway.catalogue import Entry, GrantRow
from mcpgateway.metrics import observe_call
from mcpgateway.models import AuditEntry, CallStatus, PrincipalKind, ToolApproval
from mcpgateway.ratelimit import gateway_writes, get_limiter
from mcpgateway.redaction import aget_redactor, get_redactor
from mcpgateway.runtime import get_runtime
from mcpgateway.sanitize import cap_blocks, cap_text
from mcpgateway.types import (
    ApprovalRequired,
    CallLost,
    Principal,
    ToolDenied,
    ToolInvocation,
    ToolResult,
    ToolSpec,
)
from mcpgateway.upstream.config import UpstreamLost, UpstreamTimeout, UpstreamUnavailable

log = logging.getLogger(__name__)


_refreshing: set[int] = set()
# Cold loads in flight, per (event loop, team, catalogue generation): runs starting together on
# a cold cache share one load instead of each reading the catalogue (a worker claiming 500 runs
# at once). A local write bumps the generation, so a caller after it never gets an older load.
_cold_loads: dict[tuple[int, int, int], asyncio.Future] = {}


class Gateway:
    """The gateway as a Toolbox: for one team (pipeline runs), or for whichever team each
    authenticated principal belongs to (the MCP endpoint)."""

    def __init__(self, team_id: int | None = None, *, defer_audit: bool = False):
        self.team_id = team_id
        # The /mcp endpoint's gateway: audit rows of calls outside a run are committed in
        # batches off the request path (`mcpgateway.audit_batch`); runs always wait.
        self.defer_audit = defer_audit

    async def _snapshot(self, team_id: int) -> catalogue.Snapshot:
        fresh = catalogue.cached(team_id)
        if fresh is not None:
            return fresh
        old = catalogue.stale(team_id)
        if old is None:
            key = (id(asyncio.get_running_loop()), team_id, catalogue._generation)
            pending = _cold_loads.get(key)
            if pending is None:
                pending = asyncio.ensure_future(run_write(catalogue.load, team_id))
                _cold_loads[key] = pending
                pending.add_done_callback(lambda _done, key=key: _cold_loads.pop(key, None))
            return await asyncio.shield(pending)  # one caller giving up does not cancel the others' load
        # Serve the previous snapshot while one refresh runs, so the hot path never waits
        # on the periodic reload (local writes invalidate, and those always reload first).
        if team_id not in _refreshing:
            _refreshing.add(team_id)
            task = asyncio.get_running_loop().create_task(run_write(catalogue.load, team_id))
            task.add_done_callback(lambda _: _refreshing.discard(team_id))
        return old

    async def list_tools(self, principal: Principal) -> list[ToolSpec]:
        self._check_team(principal)
        runtime = get_runtime()
        if runtime.supervisor is None:
            await runtime.ready()
            catalogue.invalidate()
        return [e.spec for e in (await self._snapshot(principal.team_id)).visible(principal)]

    async def warm(self, principal: Principal) -> None:
        """Have the principal's catalogue snapshot loaded (for `tool_input_schema`)."""
        self._check_team(principal)
        await self._snapshot(principal.team_id)

    def tool_input_schema(self, principal: Principal, name: str) -> dict[str, Any] | None:
        """One granted tool's input schema from the cached snapshot, without listing every
        tool (None: unknown, not granted, or no snapshot loaded; dispatch then decides)."""
        if self.team_id is not None and principal.team_id != self.team_id:
            return None
        snapshot = catalogue.cached(principal.team_id) or catalogue.stale(principal.team_id)
        entry = snapshot.tools.get(name) if snapshot is not None else None
        if entry is None or not entry.usable or snapshot.grant_for(principal, entry) is None:
            return None
        return entry.spec.input_schema

    async def call_tool(self, invocation: ToolInvocation) -> ToolResult:
        with tracing.span("mcpgateway.dispatch", {"gen_ai.tool.name": invocation.name, "gen_ai.tool.call.id": invocation.call_id or None,
                                                 "agentdeck.run.id": invocation.run_id, "agentdeck.agent": invocation.principal.agent}):
            return await self._dispatch(invocation)

    async def _dispatch(self, invocation: ToolInvocation) -> ToolResult:
        started = time.perf_counter()
        principal = invocation.principal
        self._check_team(principal)
        audit = _Audit(invocation, None, None, started,
                       defer=self.defer_audit and invocation.run_id is None and not invocation.idempotency_key)
        try:
            # (inside: a snapshot that cannot be loaded — the database locked, the caller gone —
            # still leaves the call's row)
            snapshot = await self._snapshot(principal.team_id)
            audit.entry = entry = snapshot.tools.get(invocation.name)
            audit.grant = grant = snapshot.grant_for(principal, entry) if entry is not None else None
            return await self._audited(invocation, entry, grant, audit)
        except BaseException as exc:
            # A call from outside a run that ends without an outcome of its own (the caller
            # went away and the server cancelled it, a limiter or the upstream raised) still
            # leaves its row. A run's call is settled by the run (its `started` row by the
            # resume, an approval by its request), except one cancelled in flight — its step's
            # timeout, a hand-back — which is `interrupted` at once: it may have run, and the
            # step decides by the interrupted-call rules (its row used to stay `started`, and
            # the step's next attempt made the call again under a new key).
            in_flight = audit.called and isinstance(exc, asyncio.CancelledError)
            if not audit.done and (invocation.run_id is None or in_flight) and not isinstance(exc, ApprovalRequired):
                status, error = _ending(exc, audit.called)
                try:
                    await asyncio.shield(audit.write(status, error=error))
                except Exception:  # (the database is failing too): the caller still gets the first error
                    log.exception("the audit row of call %s could not be written", invocation.call_id)
            raise

    async def _audited(self, invocation: ToolInvocation, entry: Entry | None, grant: GrantRow | None,
                       audit: _Audit) -> ToolResult:
        principal = invocation.principal
        await _refuse_unless_granted(invocation.name, entry, grant, audit)
        refused = await self._rate_limit(principal, entry, grant)
        if refused is not None:
            await audit.write(CallStatus.RATE_LIMITED, error=refused)
            return ToolResult(content=f"Rate limit: {refused}", is_error=True, data={"rate_limited": True})
        if grant.require_approval or invocation.meta.get("require_approval") is True:
            verdict = await self._approval(invocation, entry, audit)
            if verdict is not None:
                await audit.write(CallStatus.APPROVAL_REJECTED, error=verdict)
                # Marked as the gateway's own refusal: an upstream's error may say the same words.
                return ToolResult(content=f"The call was not approved: {verdict}", is_error=True,
                                  data={"approval_rejected": True})
            # The key and the grant were read when the call arrived, maybe minutes ago: asked
            # again now, past every cache, before the approved call is made (a revoked key's
            # call ran once a reviewer approved it, its answer handed to the key's holder: a review).
            entry, grant = await self._still_allowed(invocation, entry, audit)
        runtime = get_runtime()
        try:
            with tracing.span(f"execute_tool {invocation.name}", {
                    "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": invocation.name,
                    "gen_ai.tool.call.id": invocation.call_id or None, "mcp.method.name": "tools/call",
                    "agentdeck.server": entry.server_name}, kind="client"):
                meta = {**(caller_meta(invocation, grant) if entry.caller_context else {}), **tracing.current_traceparent()}
                if invocation.idempotency_key:
                    meta[idempotency.META_KEY] = invocation.idempotency_key
                if audit.needs_start():
                    entry, grant = await self._start(invocation, audit)
                audit.called = True
                upstream = await runtime.call_tool(entry.upstream, entry.tool_name, invocation.arguments, entry.timeout_s,
                                                   meta or None)
        except UpstreamTimeout:
            await audit.write(CallStatus.TIMEOUT, error=f"no answer within {entry.timeout_s}s")
            return ToolResult(content=f"Tool {invocation.name} timed out after {entry.timeout_s}s", is_error=True)
        except UpstreamLost as exc:
            # Sent, then the server's connection closed (it died mid-call): it may have run. It
            # was audited `unavailable` and the model told so, and it called again under a new
            # key, so not even a server deduplicating on the key could catch the repeat.
            await audit.write(CallStatus.INTERRUPTED, error=f"{exc}: it may have run")
            if invocation.run_id is not None:
                raise CallLost(str(exc)) from None
            return ToolResult(content=f"Tool {invocation.name}: the connection to its server closed after the call was "
                                      "sent, so it may or may not have run. Do not assume either.", is_error=True)
        except UpstreamUnavailable as exc:
            await audit.write(CallStatus.UNAVAILABLE, error=str(exc))
            return ToolResult(content=f"Tool server {entry.server_name} is unavailable: {exc}", is_error=True)
        # Every secret of the instance's and of the caller's team (this server's own, as
        # configured, included) is redacted from what the caller sees, not only the called
        # server's; never another team's (`mcpgateway.redaction.get_redactor`).
        redactor = (await aget_redactor(invocation.principal.team_id)).covering(runtime.redactions(entry.upstream))
        limit = settings.GATEWAY_RESULT_MAX_CHARS
        text = cap_text(redactor.text(upstream.text()), limit)
        blocks = cap_blocks(redactor.redact(upstream.content), limit)
        structured = redactor.redact(upstream.structured)
        if structured is not None and len(json.dumps(structured, default=str)) > limit:
            structured = None
        result = ToolResult(content=text, is_error=upstream.is_error, data={"mcp_content": blocks, "structured": structured})
        await audit.write(CallStatus.ERROR if upstream.is_error else CallStatus.OK,
                          result={"content": cap_text(text, 4000), "structured": structured})
        return result

    async def _still_allowed(self, invocation: ToolInvocation, entry: Entry, audit: _Audit) -> tuple[Entry, GrantRow]:
        """The entry and grant to call with once an approval is taken, read again from the
        database (no cache): the key still live and its holder still allowed to call tools,
        the grant still there and the tool still usable. Otherwise the call is refused
        (`RefusedAfterApproval`), audited `denied` with the reason, and its approval closed
        with it (it was consumed: it cannot be used again)."""
        principal = invocation.principal
        reason, fresh, grant = await run_write(_recheck, principal, invocation.name)
        if reason is None and fresh is not None and grant is not None:
            audit.entry, audit.grant = fresh, grant
            return fresh, grant
        audit.entry, audit.grant = fresh or entry, grant  # (the row refers to a grant that still exists, or none)
        log.warning("call %s of %s by %r refused after its approval: %s", invocation.call_id, invocation.name,
                    principal, reason)
        with contextlib.suppress(Exception):  # the refusal stands whatever becomes of the note
            await sync_to_async(releasing(_void_approval), thread_sensitive=False)(audit.approval_id, reason)
        await audit.write(CallStatus.DENIED, error=reason or "")
        raise RefusedAfterApproval(reason or "")

    async def _start(self, invocation: ToolInvocation, audit: _Audit) -> tuple[Entry, GrantRow]:
        """`audit.start()`; when the database refuses the `started` row's grant reference (the
        grant was deleted by another process while this process's snapshot, within its TTL,
        still holds it), the snapshot is read again: under the grant that now covers the call
        it starts again, with no grant it is refused as not granted (audited `denied`, its
        arguments kept). The entry and grant the call is made with are returned."""
        from django.db import IntegrityError

        entry, grant = audit.entry, audit.grant
        assert entry is not None and grant is not None
        try:
            await audit.start()
            return entry, grant
        except IntegrityError:
            log.info("the started row of call %s refers to grant %s, gone: reading the catalogue again",
                     invocation.call_id, grant.id)
        snapshot = await run_write(catalogue.load, invocation.principal.team_id)
        fresh = snapshot.tools.get(invocation.name)
        now = snapshot.grant_for(invocation.principal, fresh) if fresh is not None else None
        audit.entry, audit.grant = fresh or entry, now
        await _refuse_unless_granted(invocation.name, fresh, now, audit)
        assert fresh is not None and now is not None
        if now.require_approval and not audit.approval_id:
            # The grant now covering the call asks for approval, which this call never had.
            await audit.write(CallStatus.DENIED, error="the grant covering this call changed: it now asks for approval")
            raise ToolDenied(f"tool {invocation.name!r}: its grant changed; call it again")
        await audit.start()
        return fresh, now

    def _check_team(self, principal: Principal) -> None:
        if self.team_id is not None and principal.team_id != self.team_id:
            raise ToolDenied("the caller belongs to another team")

    async def _rate_limit(self, principal: Principal, entry: Entry, grant: GrantRow) -> str | None:
        limiter = get_limiter()
        checks = []
        if grant.calls_per_minute:
            checks.append((f"p:{_principal_key(principal)}:{entry.qualified}", grant.calls_per_minute, "for this caller"))
        if entry.calls_per_minute:
            checks.append((f"t:{principal.team_id}:{entry.qualified}", entry.calls_per_minute, "for this tool"))
        for key, limit, scope in checks:
            decision = await limiter.hit(key, limit)
            if not decision.allowed:
                return f"{limit} calls per minute {scope}; retry in {decision.retry_after_s:.0f}s"
        return None

    async def _approval(self, invocation: ToolInvocation, entry: Entry, audit: _Audit | None = None) -> str | None:
        """None once approved; the reason when rejected; raises ApprovalRequired for runs that can pause."""
        approval = await sync_to_async(releasing(_find_or_request_approval), thread_sensitive=False)(invocation.principal.team_id, invocation)
        if audit is not None:
            audit.approval_id = approval.pk
        deadline = time.monotonic() + settings.GATEWAY_APPROVAL_WAIT_S
        try:
            while approval.status == ToolApproval.Status.PENDING:
                if invocation.run_id is not None:
                    raise ApprovalRequired(approval.pk, invocation.name)
                if time.monotonic() > deadline:
                    if await _unanswered(approval.pk, "no decision in time"):
                        return "no decision in time"
                else:
                    await asyncio.sleep(0.5)
                approval = await sync_to_async(releasing(ToolApproval.objects.get), thread_sensitive=False)(pk=approval.pk)
        except asyncio.CancelledError:
            # The caller went away: nothing waits on this approval any more (left pending, a
            # later "approve" was accepted and changed nothing: a review).
            with contextlib.suppress(Exception):
                await asyncio.shield(_unanswered(approval.pk, "the caller stopped waiting"))
            raise
        if approval.status == ToolApproval.Status.REJECTED:
            return approval.note or "rejected by a reviewer"
        # Consumed once: only the caller whose update finds it still `approved` goes ahead.
        taken = await sync_to_async(releasing(ToolApproval.objects.filter(
            pk=approval.pk, status=ToolApproval.Status.APPROVED).update), thread_sensitive=False)(status=ToolApproval.Status.USED)
        if not taken:
            return "this approval was already used by another call"
        return None


class RefusedAfterApproval(ToolDenied):
    """An approved call refused before it was made: its key or grant went while it waited.
    The caller is told why (`tell_caller`): it knew the tool, so the reason reveals nothing."""

    tell_caller = True


def _recheck(principal: Principal, name: str) -> tuple[str | None, Entry | None, GrantRow | None]:
    """(why the call may no longer be made, or None; the tool's entry and the grant covering the
    call), from the database: the key and the principal checks first, then the catalogue, read
    again (and cached anew)."""
    if principal.api_key_id is not None:
        from mcpgateway.models import ApiKey

        key = ApiKey.objects.select_related("user").filter(pk=principal.api_key_id).first()
        if key is None or key.revoked_at is not None:
            return "key revoked while waiting for approval", None, None
        if key.user is not None and not key.user.is_active:
            return "the key's user was deactivated while waiting for approval", None, None
    for check in _principal_checks:
        refused = check(principal)
        if refused:
            return f"{refused} while waiting for approval", None, None
    snapshot = catalogue.load(principal.team_id)
    entry = snapshot.tools.get(name)
    grant = snapshot.grant_for(principal, entry) if entry is not None else None
    if entry is None or grant is None:
        return "grant removed while waiting for approval", entry, None
    if not entry.usable:
        return f"tool unavailable while waiting for approval: {entry.reason}", entry, grant
    return None, entry, grant


# Checks of a principal that this app cannot make itself (a key holder's membership and role
# are the orchestrator's), registered from their app's config: each returns why the principal
# may no longer call tools, or None. Asked when an approved call is about to be made.
_principal_checks: list[Callable[[Principal], str | None]] = []


def register_principal_check(check: Callable[[Principal], str | None]) -> None:
    if check not in _principal_checks:
        _principal_checks.append(check)


def _void_approval(approval_id: int | None, reason: str) -> None:
    """An approval taken for a call then refused: closed as rejected, with the reason (it was
    consumed already, so it cannot be used again; this says why nothing ran)."""
    if approval_id:
        ToolApproval.objects.filter(pk=approval_id, status=ToolApproval.Status.USED).update(
            status=ToolApproval.Status.REJECTED, note=f"approved, then not made: {reason}"[:2000])


async def _refuse_unless_granted(name: str, entry: Entry | None, grant: GrantRow | None, audit: _Audit) -> None:
    """Audit and refuse (ToolDenied) a call of a tool that is unknown, not granted or unusable."""
    if entry is None or grant is None:
        await audit.write(CallStatus.DENIED, error="not granted" if entry else "unknown tool")
        raise ToolDenied(f"tool {name!r} is not granted to this caller")
    if not entry.usable:
        await audit.write(CallStatus.DENIED, error=entry.reason)
        raise ToolDenied(f"tool {name!r} is unavailable: {entry.reason}")


async def _unanswered(approval_id: int, note: str) -> bool:
    """Close a pending approval nobody answered (True), unless a decision came meanwhile (False:
    the caller reads it)."""
    from mcpgateway.actions.approvals import reject_unanswered_approval

    return await sync_to_async(releasing(reject_unanswered_approval), thread_sensitive=False)(approval_id, note)


CALLER_META_KEY = "agentdeck.dev/sandbox"


def caller_meta(invocation: ToolInvocation, grant: GrantRow) -> dict[str, Any]:
    """What a server marked `caller_context` learns about a call: whose session it belongs
    to (a run's calls share one; an API key's calls share one) and what the grant allows.
    Built here from the authenticated principal, never taken from the caller."""
    p = invocation.principal
    if invocation.run_id is not None:
        session = f"run:{invocation.run_id}"
    elif p.api_key_id is not None:
        session = f"key:{p.api_key_id}"
    else:
        session = f"team:{p.team_id}:agent:{p.agent or ''}:user:{p.user_id or ''}"
    return {CALLER_META_KEY: {"session": session, "network": grant.network_access}}


def _principal_key(principal: Principal) -> str:
    if principal.api_key_id is not None:
        return f"key{principal.api_key_id}"
    return f"agent:{principal.team_id}:{principal.agent}"


def _request_hash(invocation: ToolInvocation, arguments: dict[str, Any]) -> str:
    """Over the redacted arguments: the same call gets the same hash, and the hash of a short
    secret cannot be confirmed by guessing."""
    p = invocation.principal
    body = json.dumps({"tool": invocation.name, "arguments": arguments, "run": invocation.run_id,
                       "step": invocation.step_key, "call": invocation.call_id,
                       "who": [_principal_key(p), p.user_id]}, sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def _find_or_request_approval(team_id: int, invocation: ToolInvocation) -> ToolApproval:
    """The approval for exactly this call of a run (same caller, run, step, attempt and place in
    it, call id, tool and arguments: the run paused for it and resumes to it), or a new request. A call from outside
    a run (/mcp) always asks anew: its call id is the client's JSON-RPC id, which every session
    starts again at 0 or 1, so an old decision — anyone's in the team — was taken for it: one
    approval ran other callers' identical calls, and one rejection refused them for ever."""
    arguments = storable(get_redactor(team_id).redact(invocation.arguments))  # stored: the secrets a model put in them are not
    digest = _request_hash(invocation, arguments)
    key = storable(invocation.idempotency_key or "")[:300]
    if invocation.run_id is not None:
        # The idempotency key names the attempt and the call's place in it: a scripted model's
        # call ids start again at every attempt, and an unused approval of attempt 1 ran attempt
        # 2's call unasked (found by a review). A row from before the key was kept has none.
        existing = (ToolApproval.objects.filter(team_id=team_id, request_hash=digest)
                    .filter(Q(idempotency_key=key) | Q(idempotency_key=""))
                    .exclude(status=ToolApproval.Status.USED).first())
        if existing is not None:
            return existing
    p = invocation.principal
    return ToolApproval.objects.create(
        team_id=team_id, principal_kind=PrincipalKind.API_KEY if p.api_key_id else PrincipalKind.AGENT,
        agent_name=p.agent or "", api_key_id=p.api_key_id, run_id=invocation.run_id, step_key=invocation.step_key,
        # (the id cut as the audit row's: a /mcp client's 148-character JSON-RPC id failed the
        # call on PostgreSQL with a DataError, and no approval reached the queue: a review)
        call_id=storable(invocation.call_id)[:100], tool_name=storable(invocation.name), arguments=arguments, request_hash=digest,
        idempotency_key=key)


class _Audit:
    """Collects what one call's audit row needs: written once, or `started` first and then
    updated in place with the outcome."""

    def __init__(self, invocation: ToolInvocation, entry: Entry | None, grant: GrantRow | None, started: float,
                 defer: bool = False):
        self.invocation = invocation
        self.entry = entry
        self.grant = grant
        self.started = started
        self.dispatch_id = ""
        self.defer = defer
        self.done = False  # its outcome is written (or on its way)
        self.called = False  # the upstream call was made (it may have run)
        self.approval_id: int | None = None  # the approval it asked for, if any

    def needs_start(self) -> bool:
        """Whether a `started` row is committed before the upstream call: always, except for a
        deferred (/mcp, no run) call of a read-only or idempotent tool, whose one row is
        written with its outcome. A side-effecting tool's call keeps its `started` row."""
        return not (self.defer and self.entry is not None and self.entry.spec.retry_safe)

    async def start(self) -> None:
        """Durably record that the upstream call is about to be made (committed when this returns)."""
        self.dispatch_id = uuid.uuid4().hex
        # The writer commits the row whether or not this caller still waits: a caller cancelled
        # meanwhile learns whether it did, so that the outcome updates that row instead of
        # adding a second one and leaving the first `started` for good.
        pending = gateway_writes.enqueue("audit", self._row(CallStatus.STARTED, "", None, latency_ms=0.0))
        cancelled = False
        while not pending.done():
            try:
                await asyncio.shield(pending)
            except asyncio.CancelledError:
                cancelled = True  # (every cancel: the writer settles the future whatever happens)
            except BaseException:
                break
        if pending.cancelled() or pending.exception() is not None:
            self.dispatch_id = ""  # not committed: an outcome is a whole row, not an update of this one
            if not cancelled and not pending.cancelled():
                raise pending.exception()
        if cancelled or pending.cancelled():
            raise asyncio.CancelledError

    async def write(self, status: str, *, error: str = "", result: Any = None) -> None:
        self.done = True
        row = self._row(status, error, result)
        observe_call(row["server_name"], row["tool_name"], status, row["latency_ms"])
        kind, item = ("audit_end", {k: row[k] for k in ("dispatch_id", "team_id", "status", "error", "result", "latency_ms")}) \
            if self.dispatch_id else ("audit", row)
        if self.defer:
            from mcpgateway.audit_batch import audit_writer

            if audit_writer().offer(kind, item):
                return
            # The deferred queue is full (the database has been failing a while): wait for it here.
        await gateway_writes.submit(kind, item)

    def _row(self, status: str, error: str, result: Any, latency_ms: float | None = None) -> dict[str, Any]:
        inv, p = self.invocation, self.invocation.principal
        row = {
            "team_id": p.team_id,
            "principal_kind": PrincipalKind.API_KEY if p.api_key_id else PrincipalKind.AGENT,
            "agent_name": p.agent or "", "api_key_id": p.api_key_id, "user_id": p.user_id,
            "run_id": inv.run_id, "step_key": inv.step_key, "call_id": inv.call_id[:100],
            "server_name": self.entry.server_name if self.entry else "", "tool_name": inv.name[:64],
            "arguments": inv.arguments, "result": result, "status": status, "error": error[:2000],
            "latency_ms": round((time.perf_counter() - self.started) * 1000, 3) if latency_ms is None else latency_ms,
            "grant_id": self.grant.id if self.grant else None, "created_at": timezone.now(),
            "idempotency_key": inv.idempotency_key[:300], "dispatch_id": self.dispatch_id,
        }
        return row


def _ending(exc: BaseException, called: bool) -> tuple[str, str]:
    """The audit outcome of a call that ended by `exc` instead of an answer: (status, error)."""
    if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
        if called:
            return CallStatus.INTERRUPTED, "cancelled while the upstream call was in flight (the caller went away or the server stopped): it may have run"
        return CallStatus.ERROR, "cancelled before the upstream call was made (the caller went away or the server stopped)"
    return CallStatus.ERROR, f"{type(exc).__name__}: {exc}"[:2000]


NUL_MARK = "\ufffd"
_SURROGATE = re.compile("[\ud800-\udfff]")


def storable(value: Any) -> Any:
    """`value` with every NUL character and lone surrogate in its strings (dict keys too)
    replaced by U+FFFD: PostgreSQL refuses NUL in text and in jsonb (a call's arguments or
    result may carry one), and no database stores a lone surrogate, which JSON's `\\udc80`
    gives (a JSON-RPC id made the call's audit row, and a batch of other callers', fail);
    and NaN or an infinity as the string "NaN", "Infinity" or "-Infinity": JSON has no such
    number, so SQLite's JSON check and jsonb refused the row, and a call sent with one (which
    /mcp accepts and forwards as null) failed with the database's exception name."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, str):
        if "\x00" in value:
            value = value.replace("\x00", NUL_MARK)
        if not value.isascii():
            value = _SURROGATE.sub(NUL_MARK, value)  # (JSON's "\\udc80", in an id too: no database stores it)
        return value
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    return value


def _insert_audit(rows: list[dict[str, Any]]) -> list[None]:
    """Audit rows of every server and outcome (denials, rate limits, errors too) are redacted
    here, on the writer thread, with the secrets of the instance and of each row's team."""
    rows = [storable({**get_redactor(row["team_id"]).redact(row), "created_at": row["created_at"]}) for row in rows]
    for row in rows:
        row["tool_name"], row["call_id"], row["error"] = row["tool_name"][:64], row["call_id"][:100], row["error"][:2000]
    insert_rows(AuditEntry, rows)
    return [None] * len(rows)


def _finish_audit(rows: list[dict[str, Any]]) -> list[None]:
    """The outcome of calls audited as `started`, written into their rows (redacted, like inserts)."""
    for row in rows:
        redactor = get_redactor(row.get("team_id"))
        values = storable({"status": row["status"], "error": redactor.text(row["error"])[:2000],
                           "result": redactor.redact(row["result"]), "latency_ms": row["latency_ms"]})
        update_row(AuditEntry, values, {"dispatch_id": row["dispatch_id"]})
    return [None] * len(rows)


gateway_writes.register("audit", _insert_audit, durable=True)
gateway_writes.register("audit_end", _finish_audit, durable=True)


def take_interrupted_calls(run_id: int, recorded: set[str] | frozenset[str] = frozenset()) -> dict[str, dict[str, Any]]:
    """The calls of a run that an earlier process started and never finished, by idempotency key
    — and those it finished (`answered`, with the audited result) in case its ledger missed them.

    Called when the run resumes, before any call of this process starts: every `started` row
    of the run is then a call that may have run; it is marked `interrupted`. A key stays
    interrupted (also across a second crash) until a later row of the same key completes.
    """
    open_ = (CallStatus.STARTED, CallStatus.INTERRUPTED)
    AuditEntry.objects.filter(run_id=run_id, status=CallStatus.STARTED).update(status=CallStatus.INTERRUPTED)
    rows = AuditEntry.objects.filter(run_id=run_id).exclude(idempotency_key="").order_by("id")
    found: dict[str, dict[str, Any]] = {}
    for row in rows.values("id", "idempotency_key", "status", "tool_name", "call_id", "created_at"):
        key = row["idempotency_key"]
        if row["status"] in open_:
            found[key] = {"audit_id": row["id"], "tool": row["tool_name"], "call_id": row["call_id"],
                          "started_at": row["created_at"].isoformat()}
        elif row["status"] in ANSWERED and key not in recorded:
            # It ran and answered, but the run's ledger (`recorded`: the keys it holds) lacks it:
            # the process died between this row and the ledger's commit. The answer is given
            # back instead of the call being made again (which sent a side effect twice, silently).
            found[key] = {"audit_id": row["id"], "tool": row["tool_name"], "call_id": row["call_id"],
                          "started_at": row["created_at"].isoformat(), "answered": row["status"]}
        else:
            found.pop(key, None)
    answered = {entry["audit_id"]: entry for entry in found.values() if "answered" in entry}
    if answered:  # only these results are read (a long run's every answer was held in memory)
        for pk, result in AuditEntry.objects.filter(pk__in=answered).values_list("id", "result"):
            answered[pk]["result"] = result or {}
    return found


# Outcomes of a call the upstream answered (the rest: refused before the call, or unknown).
ANSWERED = (CallStatus.OK, CallStatus.ERROR)


def team_gateway(team_id: int) -> Gateway:
    """The toolbox pipeline runs use: the gateway for the run's team."""
    return Gateway(team_id)

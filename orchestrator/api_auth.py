"""REST API authentication: bearer API keys, or the browser session (with CSRF).

Both produce a `Caller`. A key acts in its own team; a user key's role is its user's role
there (a key never grants more than its user has); a service-account key's role follows
its scopes. A session acts in the team chosen with the `X-Agentdeck-Team` header, else the
team selected in the dashboard, else the user's first team. Instance-operator authority
(mcpgateway.authority) comes with an operator's session or their own admin-scoped keys,
never with a service account.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest
from ninja.security import HttpBearer, SessionAuth

from authz.policy import allows
from authz.routes import MCP_ENDPOINT_ACTION
from config.db_writer import releasing
from mcpgateway import catalogue
from mcpgateway.actions.access import authenticate_token
from mcpgateway.api_caller import Caller
from mcpgateway.authority import is_instance_operator, key_is_operator
from mcpgateway.downstream.access import AuthenticationUnavailable, KeyNotAllowed
from mcpgateway.models import ApiKey
from mcpgateway.types import Principal
from orchestrator.limits import check_request_rate
from orchestrator.models import Membership

SERVICE_ROLE = {"admin": "owner", "run": "builder", "read": "viewer"}
ALL_SCOPES = frozenset({"read", "run", "admin"})


class ApiKeyAuth(HttpBearer):
    """`Authorization: Bearer adk_…`"""

    def authenticate(self, request: HttpRequest, token: str) -> Caller | None:
        found = authenticate_token(token)
        if found is None:
            return None
        caller = caller_for_key(found[0])
        if caller is not None:
            check_request_rate(caller)
        return caller


def caller_for_key(key: ApiKey) -> Caller | None:
    """The caller a live key acts as in its team; None once its user left the team."""
    scopes = frozenset(key.scopes)
    if key.service_account:
        role = max((SERVICE_ROLE[s] for s in scopes), key=["viewer", "reviewer", "builder", "owner"].index, default="viewer")
    else:
        membership = Membership.objects.filter(team_id=key.team_id, user_id=key.user_id).first()
        if membership is None:
            return None  # the user left the team: the key goes with them
        role = membership.role
    operator = key_is_operator(key.user, scopes, key.service_account) if key.user_id else False
    return Caller(team_id=key.team_id, role=role, scopes=scopes, user_id=key.user_id, api_key_id=key.pk, operator=operator)


def _mcp_principal(token: str) -> Principal | None:
    found = authenticate_token(token)
    if found is None:
        return None
    key, principal = found
    caller = caller_for_key(key)
    if caller is None:
        return None
    if not allows(caller.actor, MCP_ENDPOINT_ACTION):
        raise KeyNotAllowed("This key cannot call tools: /mcp needs a key with the `run` scope whose user is a "
                            "builder or owner of the team (or a service account with `run`).")
    return principal


def mcp_principal_refusal(principal: Principal) -> str | None:
    """Why a principal /mcp accepted earlier may no longer call tools, read from the database
    now (no cache): for a key, its user left the team or lost the role `mcp.call` needs. None
    when it still may, and for principals that are not keys. Dispatch asks this before making
    a call that waited for an approval (registered from this app's config)."""
    if principal.api_key_id is None:
        return None
    key = ApiKey.objects.select_related("user").filter(pk=principal.api_key_id, revoked_at__isnull=True).first()
    if key is None:
        return "key revoked"
    caller = caller_for_key(key)
    if caller is None:
        return "the key's user left the team"
    if not allows(caller.actor, MCP_ENDPOINT_ACTION):
        return "the key may no longer call tools"
    return None


# token digest -> (principal, monotonic expiry, catalogue generation). Only accepted keys are
# kept; a refused token is asked of the database every time, so a wrong key is never
# remembered as valid. A local revocation bumps the catalogue generation (it invalidates the
# gateway's caches on commit), which drops this process's entries at once.
_mcp_key_cache: dict[str, tuple[Principal, float, int]] = {}
MCP_KEY_CACHE_MAX = 10_000


async def authenticate_mcp(token: str) -> Principal | None:
    """The MCP endpoint's authentication: a live key of a current member, asked of the same
    policy table as every other door (`mcp.call`); each tool call is then checked against
    the team's grants by dispatch.

    An accepted key's principal is remembered for `MCP_KEY_CACHE_TTL_S` (default 5 s), so
    the hot path does no database lookup: a key revoked (or a member removed, or a policy
    change) stops working on /mcp within that TTL, in every process. Grants are not cached
    here (dispatch checks them per call against the catalogue snapshot)."""
    known = known_mcp_principal(token)
    if known is not None:
        return known
    digest = hashlib.sha256(token.encode()).hexdigest()
    generation = catalogue._generation
    ttl = settings.MCP_KEY_CACHE_TTL_S
    try:
        principal = await sync_to_async(releasing(_mcp_principal), thread_sensitive=False)(token)
    except (OperationalError, InterfaceError) as exc:  # unreachable, or no pooled connection in time
        raise AuthenticationUnavailable("the database is busy or unreachable") from exc
    if principal is None:
        _mcp_key_cache.pop(digest, None)
    elif ttl > 0:
        if len(_mcp_key_cache) >= MCP_KEY_CACHE_MAX:
            _forget_expired(time.monotonic())
        _mcp_key_cache[digest] = (principal, time.monotonic() + ttl, generation)
    return principal


def known_mcp_principal(token: str) -> Principal | None:
    """The principal `authenticate_mcp` accepted for `token` within the TTL (and since the last
    local revocation), from the cache alone; None means "ask `authenticate_mcp`", never "refused"."""
    hit = _mcp_key_cache.get(hashlib.sha256(token.encode()).hexdigest())
    if hit is not None and hit[1] > time.monotonic() and hit[2] == catalogue._generation:
        return hit[0]
    return None


# The endpoint's guard asks this first, with no deadline to arm for a lookup that cannot block.
authenticate_mcp.known = known_mcp_principal  # type: ignore[attr-defined]


def _forget_expired(now: float) -> None:
    for digest, (_, expires, _generation) in list(_mcp_key_cache.items()):
        if expires <= now:
            _mcp_key_cache.pop(digest, None)
    if len(_mcp_key_cache) >= MCP_KEY_CACHE_MAX:
        _mcp_key_cache.clear()


def forget_mcp_keys() -> None:
    """Drop every cached /mcp key (tests; a process that wants a revocation to apply at once)."""
    _mcp_key_cache.clear()


class TeamSessionAuth(SessionAuth):
    """The dashboard's session, for the browser (CSRF is checked on unsafe methods)."""

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        user = request.user
        if not user.is_authenticated:
            return None
        memberships = {m.team_id: m for m in Membership.objects.filter(user=user)}
        if not memberships:
            return None
        wanted = request.headers.get("X-Agentdeck-Team") or request.session.get("team_id")
        try:
            membership = memberships[int(wanted)] if wanted is not None else None
        except (ValueError, KeyError):
            return None
        membership = membership or min(memberships.values(), key=lambda m: m.team_id)
        caller = Caller(team_id=membership.team_id, role=membership.role, scopes=ALL_SCOPES, user_id=user.pk,
                        operator=is_instance_operator(user), session=True)
        check_request_rate(caller)
        return caller

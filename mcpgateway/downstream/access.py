"""Who may reach the MCP endpoint: Host/Origin checks and bearer-token authentication.

Both run before any MCP processing. The Host check is the DNS-rebinding defence and
uses Django's `ALLOWED_HOSTS` forms (`"example.com"`, `".example.com"`, `"*"`, each
matching any port unless it names one), so the endpoint can share Django's setting.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urlsplit

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import Scope

from mcpgateway.types import Principal

logger = logging.getLogger(__name__)

Authenticate = Callable[[str], Awaitable[Principal | None]]

PRINCIPAL_SCOPE_KEY = "agentdeck.principal"
"""ASGI scope key under which the authenticated `Principal` reaches the MCP handlers."""

AUTHENTICATE_TIMEOUT_S = 10.0
RETRY_AFTER_S = "5"


class KeyNotAllowed(Exception):
    """A live key whose scope (or whose user's role) does not allow calling tools: 403
    `insufficient_scope` naming what it lacks, not the 401 of an invalid key."""


class AuthenticationUnavailable(Exception):
    """An authenticator could not decide (its database is unreachable or busy): the request
    is answered 503 with Retry-After, as every other request then is, not 401 nor a 500."""
_HOSTS_SEEN_MAX = 256
_HOST_MEMO_CHARS = 300

_HOST_RE = re.compile(r"^(?P<domain>[a-z0-9.-]+|\[[a-f0-9]*:[a-f0-9.:]+\])(?::(?P<port>\d+))?$")


class RequestGuard:
    """Decides, from the headers alone, whether a request may reach the MCP server."""

    def __init__(
        self,
        *,
        authenticate: Authenticate,
        allowed_hosts: Sequence[str],
        allowed_origins: Sequence[str] | None,
        realm: str,
    ) -> None:
        self._authenticate = authenticate
        self._allowed_hosts = [host.lower() for host in allowed_hosts]
        self._allowed_origins = [origin.lower().rstrip("/") for origin in allowed_origins or []]
        self._realm = realm.replace('"', "")
        self._hosts_seen: dict[str, bool] = {}

    def check_host(self, headers: Headers) -> JSONResponse | None:
        """Refuse a Host (or browser Origin) outside the allowed hosts."""
        if not self._host_allowed(headers.get("host", "")):
            return error_response(421, "invalid_host", "Host header is not allowed.")
        origin = headers.get("origin")
        if origin is not None and not self._origin_allowed(origin):
            return error_response(403, "invalid_origin", "Origin header is not allowed.")
        return None

    def _host_allowed(self, host: str) -> bool:
        """`host_allowed` against this guard's hosts, remembered per Host value (a few hosts
        come back on every request; the memory is bounded in entries and length, as the values
        are the caller's, checked before authentication)."""
        allowed = self._hosts_seen.get(host)
        if allowed is None:
            allowed = host_allowed(host, self._allowed_hosts)
            if len(host) <= _HOST_MEMO_CHARS:  # (a Host longer than any real one is not kept)
                if len(self._hosts_seen) >= _HOSTS_SEEN_MAX:
                    self._hosts_seen.clear()
                self._hosts_seen[host] = allowed
        return allowed

    async def principal_for(self, headers: Headers) -> Principal | JSONResponse:
        """Authenticate the bearer token: the principal, or the 401 (503) to send instead."""
        token = bearer_token(headers)
        if not token:
            return self._unauthorized(None, "A bearer token is required.")
        # An authenticator may offer `known(token)`: a principal it accepted lately, answered
        # from memory (None: ask it). Nothing there can block, so no deadline is armed for it.
        known = getattr(self._authenticate, "known", None)
        principal = known(token) if callable(known) else None
        if isinstance(principal, Principal):
            return principal
        try:
            async with asyncio.timeout(AUTHENTICATE_TIMEOUT_S):
                principal = await self._authenticate(token)
        except TimeoutError:
            logger.warning("MCP authentication timed out after %ss", AUTHENTICATE_TIMEOUT_S)
            return error_response(503, "unavailable", "Authentication is unavailable; try again.",
                                  {"Retry-After": RETRY_AFTER_S})
        except AuthenticationUnavailable as exc:
            logger.warning("MCP authentication unavailable: %s", exc.__cause__ or exc)
            return error_response(503, "unavailable", "Authentication is unavailable; try again.",
                                  {"Retry-After": RETRY_AFTER_S})
        except KeyNotAllowed as exc:
            challenge = f'Bearer realm="{self._realm}", error="insufficient_scope", scope="run"'
            return error_response(403, "insufficient_scope", str(exc), {"WWW-Authenticate": challenge})
        if principal is None:
            return self._unauthorized("invalid_token", "The bearer token is invalid or revoked.")
        return principal

    def _origin_allowed(self, origin: str) -> bool:
        if self._allowed_origins:
            return origin.lower().rstrip("/") in self._allowed_origins
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and host_allowed(parts.netloc, self._allowed_hosts)

    def _unauthorized(self, error: str | None, description: str) -> JSONResponse:
        challenge = f'Bearer realm="{self._realm}"'
        if error is not None:
            challenge += f', error="{error}", error_description="{description}"'
        return error_response(401, error or "unauthorized", description, {"WWW-Authenticate": challenge})


def authenticated_scope(scope: Scope, principal: Principal, headers: Headers) -> Scope:
    """A copy of `scope` carrying the principal, and the identity the SDK binds sessions to.

    The SDK's session manager remembers `scope["user"]` of the request that opened a
    legacy session and answers 404 to any other identity presenting that session id.
    """
    identity = AccessToken(
        token=hashlib.sha256(bearer_token(headers).encode()).hexdigest(),
        client_id=json.dumps([principal.team_id, principal.agent, principal.user_id, principal.api_key_id]),
        scopes=[],
    )
    return {**scope, PRINCIPAL_SCOPE_KEY: principal, "user": AuthenticatedUser(identity)}


def bearer_token(headers: Headers) -> str:
    """The token of an `Authorization: Bearer <token>` header, or "" when there is none."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def host_allowed(host: str, allowed: Sequence[str]) -> bool:
    """Django's ALLOWED_HOSTS matching on a Host value that may carry a port."""
    match = _HOST_RE.match(host.lower())
    if match is None:
        return False
    domain = match["domain"].removesuffix(".")
    for pattern in allowed:
        if pattern == "*":
            return True
        wanted = _HOST_RE.match(pattern.removesuffix(":*"))
        if wanted is None or (wanted["port"] is not None and wanted["port"] != match["port"]):
            continue
        name = wanted["domain"]
        if domain == name or (name.startswith(".") and (domain.endswith(name) or domain == name[1:])):
            return True
    return False


def error_response(status: int, code: str, description: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """A small JSON error body in the OAuth style (`error`, `error_description`)."""
    return JSONResponse({"error": code, "error_description": description}, status_code=status, headers=headers)

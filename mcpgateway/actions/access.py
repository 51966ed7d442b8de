"""API keys (shown once, stored hashed), grants, and authenticating a bearer token."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from mcpgateway.errors import GatewayError, NotOperator
from mcpgateway.models import ApiKey, Grant, PrincipalKind, Tool, ToolServer
from mcpgateway.types import Principal


def _invalidate() -> None:
    from mcpgateway.catalogue import invalidate

    invalidate()


def do_create_api_key(team_id: int, name: str, user: AbstractBaseUser | None = None, scopes: list[str] | None = None,
                      service_account: bool = False) -> tuple[ApiKey, str]:
    """A new key and its token. The token is returned this once; only its hash is kept."""
    if scopes is not None and not scopes:  # `or` turned an asked-for empty list into read + run, silently
        raise GatewayError("choose at least one scope (read, run, admin)", "scopes")
    scopes = ["read", "run"] if scopes is None else list(scopes)
    bad = set(scopes) - set(ApiKey.Scope.values)
    if bad:
        raise GatewayError(f"unknown scopes: {', '.join(sorted(bad))}", "scopes")
    if not service_account and user is None:
        raise GatewayError("a key belongs to a user or is a service account", "user")
    token = ApiKey.new_token()
    key = ApiKey.objects.create(team_id=team_id, name=name, user=user, scopes=scopes, service_account=service_account,
                                prefix=token[:12], hashed=ApiKey.hash_token(token))
    return key, token


def do_revoke_api_key(key: ApiKey) -> ApiKey:
    key.revoked_at = timezone.now()
    key.save(update_fields=["revoked_at"])
    transaction.on_commit(_invalidate)
    return key


MAX_CALLS_PER_MINUTE = 1_000_000


def authenticate_token(token: str) -> tuple[ApiKey, Principal] | None:
    """The live key for a bearer token, with its principal; None for unknown or revoked, and for
    a key whose user an operator deactivated (`is_active`: the user can no longer sign in, and
    the keys are cut with the account)."""
    if not token.startswith("adk_"):
        return None
    key = ApiKey.objects.select_related("user").filter(hashed=ApiKey.hash_token(token), revoked_at__isnull=True).first()
    if key is None or (key.user is not None and not key.user.is_active):
        return None
    now = timezone.now()
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)  # at most once a minute: keep the hot path cheap
    return key, Principal(team_id=key.team_id, user_id=key.user_id, api_key_id=key.pk)


def do_grant(server: ToolServer, *, agent: str = "", api_key: ApiKey | None = None, tool: Tool | None = None,
             require_approval: bool = False, calls_per_minute: int | None = None, network_access: bool = False,
             operator: bool = False) -> Grant:
    """Allow an agent, an API key, or (neither given) everyone in the team a server or one tool.

    `network_access` (a sandbox container on the network the operator configured, Docker's
    `bridge` by default, from which the host, private ranges and metadata addresses are
    reachable) is an operator's to give: a team member's grant (`operator=False`) with it is
    refused (a builder's grant reached private addresses that way: a review)."""
    if network_access and not operator:
        raise NotOperator("network access for sandbox containers is granted by an instance operator: the sandbox's "
                          "network is the operator's, and can reach the host and private addresses", "network_access")
    if agent and api_key:
        raise GatewayError("a grant is for an agent or an API key, not both", "principal")
    if tool is not None and tool.server_id != server.pk:
        raise GatewayError(f"tool {tool.name!r} is not on server {server.name!r}", "tool")
    if api_key is not None and api_key.team_id != server.team_id:
        raise GatewayError("the key belongs to another team", "api_key")
    if calls_per_minute is not None and not 1 <= calls_per_minute <= MAX_CALLS_PER_MINUTE:
        # (the column is a 32-bit integer: 99999999999 was a 500 on PostgreSQL)
        raise GatewayError(f"calls_per_minute must be at least 1 and at most {MAX_CALLS_PER_MINUTE:,}", "calls_per_minute")
    kind = PrincipalKind.AGENT if agent else PrincipalKind.API_KEY if api_key else PrincipalKind.TEAM
    grant = Grant.objects.create(team_id=server.team_id, principal_kind=kind, agent_name=agent, api_key=api_key,
                                 server=server, tool=tool, require_approval=require_approval,
                                 calls_per_minute=calls_per_minute, network_access=network_access)
    transaction.on_commit(_invalidate)
    return grant


def do_revoke_grant(grant: Grant) -> None:
    grant.delete()
    transaction.on_commit(_invalidate)

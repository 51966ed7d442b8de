"""Who may do what: one table of actions, and the checks every door asks.

An action (`apikey.create`, `run.start`, ...) names the least team role it needs, the API
key scope it needs, and whether only an instance operator may do it. An `Actor` is the
principal as the policy sees it: their role in the object's team (None for a non-member),
their credential's scopes (None for a browser session, which carries every scope), and
whether they are an instance operator. `check_action` raises `PolicyDenied`; `allows`
answers yes or no. The REST API, the dashboard, the websockets and /mcp all ask these
functions; nothing else knows who may do what.

This module imports no models, so every app (the gateway included) may use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ROLE_RANK = {"viewer": 0, "reviewer": 1, "builder": 2, "owner": 3}
ROLES = tuple(ROLE_RANK)
SCOPES = ("read", "run", "admin")


class PolicyDenied(Exception):
    """The principal may not do this (403); `not_found` asks the door to answer 404 instead."""

    def __init__(self, message: str, not_found: bool = False):
        super().__init__(message)
        self.message = message
        self.not_found = not_found


@dataclass(frozen=True, slots=True)
class Rule:
    """What one action needs. `role` None: no team role (public, signed-in, or instance-level)."""

    role: str | None
    scope: str | None
    operator_only: bool = False
    signed_in: bool = True
    summary: str = ""


def _team(role: str, scope: str, summary: str) -> Rule:
    return Rule(role=role, scope=scope, summary=summary)


def _operator(summary: str, role: str | None = None) -> Rule:
    return Rule(role=role, scope="admin", operator_only=True, summary=summary)


# Markers for routes that act on no team object.
PUBLIC = "PUBLIC"  # anyone, signed in or not (sign-in page, health, schemas)
AUTHENTICATED = "AUTHENTICATED"  # any signed-in user (switching one's own team)
OPERATOR = "OPERATOR"  # instance operators only (Django admin, instance settings)
TOKEN = "TOKEN"  # guarded by the route's own bearer token, or an operator (metrics, readiness details)
MARKERS = (PUBLIC, AUTHENTICATED, OPERATOR, TOKEN)

POLICY: dict[str, Rule] = {
    PUBLIC: Rule(role=None, scope=None, signed_in=False, summary="anyone"),
    AUTHENTICATED: Rule(role=None, scope=None, summary="any signed-in user"),
    OPERATOR: _operator("instance operators only"),
    TOKEN: Rule(role=None, scope=None, signed_in=False, summary="the route's own token, or an operator"),
    # reading the team's objects
    "team.view": _team("viewer", "read", "see the team's home page and live updates"),
    "agent.view": _team("viewer", "read", "list and read agents"),
    "pipeline.view": _team("viewer", "read", "list and read pipelines, versions and diffs; validate a spec"),
    "run.view": _team("viewer", "read", "list and read runs, steps, events, traces"),
    "review.view": _team("viewer", "read", "see the review queue"),
    "server.view": _team("viewer", "read", "list tool servers, tools, their health; export the config"),
    "grant.view": _team("viewer", "read", "list grants"),
    "audit.view": _team("viewer", "read", "read the audit log"),
    "usage.view": _team("viewer", "read", "read usage, limits and observability"),
    "eval.view": _team("viewer", "read", "read eval suites and eval runs"),
    "trace.verify": _team("viewer", "read", "verify an exported trace"),
    "webhook.view": _team("builder", "read", "list a pipeline's webhooks"),
    "apikey.view": _team("owner", "admin", "list the team's API keys"),
    "credential.view": _team("viewer", "read", "list the team's model credentials (never their keys)"),
    "catalogue.view": _team("viewer", "read", "browse the operators' server templates"),
    # (A read key, or a viewer's, called tools that act over /mcp: a review. As `tool.try`.)
    "mcp.call": _team("builder", "run", "call tools over /mcp: a live key with the `run` scope of a builder or above "
                      "(or such a service account); each call is then checked against the team's grants"),
    # changing the team's objects
    "agent.edit": _team("builder", "admin", "create, change and delete agents"),
    "pipeline.edit": _team("builder", "admin", "create pipelines and save versions"),
    "webhook.manage": _team("builder", "admin", "add, change and delete a pipeline's webhooks; rotate their secrets"),
    "run.start": _team("builder", "run", "start a run"),
    "run.cancel": _team("builder", "run", "cancel a run"),
    "run.resume": _team("builder", "run", "resume a run"),
    "run.fork": _team("builder", "run", "fork a run from a step, or run it again with the same input"),
    "review.claim": _team("reviewer", "run", "claim a review item"),
    "review.assign": _team("reviewer", "run", "assign a review item"),
    "review.decide": _team("reviewer", "run", "decide a review item"),
    "limit.manage": _team("builder", "admin", "add, change and delete budget and rate limits"),
    "server.create_remote": _team("builder", "admin", "add or change a remote (HTTP/SSE) tool server"),
    "server.import": _team("builder", "admin", "import a server config file (stdio entries need an operator)"),
    "server.delete": _team("builder", "admin", "delete a tool server"),
    "server.add_from_template": _team("builder", "admin", "add a catalogue server, or change its parameters and secrets"),
    "tool.manage": _team("builder", "admin", "enable, disable and approve tools"),
    "server.restart": _team("builder", "admin", "test (connect), restart, disable and enable a tool server; enabling or restarting a stdio or env-reading one needs an operator"),
    "tool.try": _team("builder", "run", "call a tool by hand from the tools page (audited, within grants)"),
    "grant.create": _team("builder", "admin", "grant a tool or server"),
    "grant.revoke": _team("builder", "admin", "revoke a grant"),
    "apikey.create": _team("owner", "admin", "create an API key"),
    "apikey.revoke": _team("owner", "admin", "revoke an API key"),
    "credential.manage": _team("owner", "admin", "add, replace and delete the team's model credentials"),
    "secret.manage": _team("builder", "admin", "set the team's server secrets"),
    "eval.edit": _team("builder", "admin", "import eval suites"),
    "eval.run": _team("builder", "run", "start an eval run"),
    # instance level: what runs on a host or reads its environment
    "server.create_stdio": _operator("create or change a stdio server (command, args, env)"),
    "sandbox.manage": _operator("change the sandbox server's settings"),
    "template.manage": _operator("install, change and remove server templates"),
    "credential.offer": _operator("offer the instance's environment model keys to chosen teams"),
    "env.reference": _operator("reference a process environment variable"),
}


@dataclass(frozen=True, slots=True)
class Actor:
    """The principal as the policy sees it, relative to one team."""

    role: str | None
    scopes: frozenset[str] | None = None
    is_operator: bool = False
    signed_in: bool = True


def rule_for(action: str) -> Rule:
    try:
        return POLICY[action]
    except KeyError:
        raise PolicyDenied(f"{action!r} has no policy entry") from None


def check_action(actor: Actor | None, action: str) -> None:
    """Raise `PolicyDenied` unless `actor` may do `action` (in the team its role is for)."""
    rule = rule_for(action)
    if rule.signed_in and (actor is None or not actor.signed_in):
        raise PolicyDenied("sign in first")
    if actor is None:
        return
    if rule.operator_only and not actor.is_operator:
        raise PolicyDenied(f"only an instance operator may {rule.summary}")
    if rule.scope is not None and actor.scopes is not None and rule.scope not in actor.scopes:
        raise PolicyDenied(f"this needs an API key with the {rule.scope!r} scope")
    if rule.role is not None and (actor.role is None or ROLE_RANK[actor.role] < ROLE_RANK[rule.role]):
        raise PolicyDenied(f"this needs the {rule.role} role in the team")


def allows(actor: Actor | None, action: str) -> bool:
    try:
        check_action(actor, action)
    except PolicyDenied:
        return False
    return True


def check_team_object(actor_team_id: int | None, object_team_id: int | None) -> None:
    """An object of another team (or none) is not found, never forbidden: ids do not leak."""
    if actor_team_id is None or object_team_id is None or actor_team_id != object_team_id:
        raise PolicyDenied("no such object in this team", not_found=True)


def access_object(actor: Actor | None, action: str, actor_team_id: int | None, obj: Any) -> Any:
    """`obj` when `actor` may do `action` to it: the action first (403), then its team (404)."""
    check_action(actor, action)
    check_team_object(actor_team_id, getattr(obj, "team_id", None))
    return obj


def is_instance_operator(user: Any) -> bool:
    """Django staff or superuser (or `mcpgateway.authority`'s answer, once it exists)."""
    if user is None or not getattr(user, "is_authenticated", False):
        return False
    try:
        from mcpgateway.authority import is_instance_operator as authority_says
    except ImportError:  # the authority module is added by the instance-operator work
        return bool(getattr(user, "is_staff", False) or getattr(user, "is_superuser", False))
    return bool(authority_says(user))

"""Model credentials: a team's provider keys (stored encrypted, never shown back) and the
instance credentials an operator offers to chosen teams.

A team owner adds, replaces (rotates) and deletes the team's own credentials; the key is
write-only. A credential's base URL is a URL team members set, so it passes the outbound guard
(`mcpgateway.outbound.check_url`) here and again at every connect. Only an instance operator
makes a credential that reads a process environment variable (`source=env`), and only that
operator decides which teams may use it; teams see its name and provider, never the variable.
"""

from __future__ import annotations

import re
from typing import Any

from django.db import transaction

from mcpgateway import redaction
from mcpgateway.crypto import encrypt
from mcpgateway.outbound import OutboundRefused, check_url
from orchestrator.actions.errors import ActionError, Conflict, NotAllowed
from orchestrator.models import ModelCredential, Team

# Providers that take a key; the scripted provider needs none.
KEYED_PROVIDERS = ("anthropic", "openai")
CREDENTIAL_FIELDS = ("name", "provider", "key", "base_url")
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,99}\Z")


class OutboundRefusedError(ActionError):
    """The outbound guard refused a URL (422, naming the field)."""

    code = "outbound_refused"
    status = 422


def check_base_url(url: str, field: str) -> str:
    """An empty or guarded base URL; the guard's refusal as an action error naming `field`."""
    url = (url or "").strip()
    if url:
        try:
            check_url(url, field)
        except OutboundRefused as exc:
            raise OutboundRefusedError(exc.message, exc.field) from None
    return url


def check_credential(team: Team, fields: dict[str, Any], credential: ModelCredential | None = None) -> dict[str, Any]:
    """The fields of a team credential, validated; raises ActionError naming the first bad one."""
    unknown = set(fields) - set(CREDENTIAL_FIELDS)
    if unknown:
        raise ActionError(f"unknown credential fields: {', '.join(sorted(unknown))}", sorted(unknown)[0])
    checked: dict[str, Any] = {}
    name = str(fields.get("name", credential.name if credential else "")).strip()
    if not 1 <= len(name) <= 100:
        raise ActionError("name the credential (at most 100 characters)", "name")
    if ModelCredential.objects.filter(team=team, name=name).exclude(pk=credential.pk if credential else None).exists():
        raise ActionError(f"a credential named {name!r} exists already", "name")
    checked["name"] = name
    provider = fields.get("provider", credential.provider if credential else "")
    if provider not in KEYED_PROVIDERS:
        raise ActionError(f"the provider is one of {', '.join(KEYED_PROVIDERS)}", "provider")
    if credential is not None and provider != credential.provider and credential.agents.exists():
        raise ActionError("agents use this credential; its provider cannot change", "provider")
    checked["provider"] = provider
    if "base_url" in fields:
        checked["base_url"] = check_base_url(str(fields["base_url"] or ""), "base_url")
    key = fields.get("key")
    if key is not None:
        key = str(key).strip()
        if not key:
            raise ActionError("the key is empty", "key")
        if len(key) > 4000 or "\x00" in key:
            raise ActionError("that is not a provider key", "key")
        checked["key"] = key
    elif credential is None:
        raise ActionError("give the provider's API key", "key")
    return checked


@transaction.atomic
def do_save_credential(team: Team, fields: dict[str, Any], credential: ModelCredential | None = None) -> ModelCredential:
    """Create a team credential, or update `credential` (a new key rotates it)."""
    if credential is not None and credential.team_id != team.pk:
        raise ActionError("no such credential in this team", "name")
    checked = check_credential(team, fields, credential)
    key = checked.pop("key", None)
    if credential is None:
        credential = ModelCredential(team=team, source=ModelCredential.Source.STORED)
    for field, value in checked.items():
        setattr(credential, field, value)
    if key is not None:
        credential.key_encrypted = encrypt(key)
    credential.save()
    transaction.on_commit(redaction.invalidate)  # its key is redacted everywhere from now on
    return credential


def do_delete_credential(credential: ModelCredential) -> None:
    """Delete a team credential no agent uses (those would silently fall back to another key)."""
    names = sorted(credential.agents.values_list("name", flat=True))
    if names:
        raise Conflict(f"agents use this credential: {', '.join(names)}; give them another one first", "credential")
    credential.delete()


@transaction.atomic
def do_offer_instance_credential(operator: bool, fields: dict[str, Any], teams: list[Team],
                                 credential: ModelCredential | None = None) -> ModelCredential:
    """An instance operator's credential reading `env_var` (empty: the provider's own setting,
    e.g. ANTHROPIC_API_KEY), offered to `teams`. Nobody else may make one."""
    if not operator:
        raise NotAllowed("only an instance operator may offer the instance's model keys", "source")
    name = str(fields.get("name", credential.name if credential else "")).strip()
    if not 1 <= len(name) <= 100:
        raise ActionError("name the credential (at most 100 characters)", "name")
    provider = fields.get("provider", credential.provider if credential else "")
    if provider not in KEYED_PROVIDERS:
        raise ActionError(f"the provider is one of {', '.join(KEYED_PROVIDERS)}", "provider")
    env_var = str(fields.get("env_var", credential.env_var if credential else "") or "")
    if env_var and not ENV_NAME.match(env_var):
        raise ActionError("an environment variable name, like ANTHROPIC_API_KEY", "env_var")
    credential = credential or ModelCredential(team=None, source=ModelCredential.Source.ENV)
    credential.name, credential.provider, credential.env_var = name, provider, env_var
    credential.base_url = str(fields.get("base_url", credential.base_url) or "").strip()
    credential.save()
    transaction.on_commit(redaction.invalidate)  # its key is redacted everywhere from now on
    credential.shared_with.set(teams)
    return credential

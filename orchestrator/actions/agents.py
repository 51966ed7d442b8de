"""Creating and editing agents from validated fields.

`check_agent` holds the rules a form or an API body must meet: a slug name unique in the
team, a registered provider, numbers in range, `options` a JSON object whose provider part
is well formed (for the scripted provider, its `script`), and a model credential the team
may use. `options.api_key_env` and `options.base_url` read the host's environment or choose
where keys go, so only instance operators set them; teams use credentials.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from django.db import transaction

from orchestrator.actions.errors import ActionError, Conflict
from orchestrator.actions.teams import do_create_agent
from orchestrator.engine.defences import DefenceError, Defences
from orchestrator.engine.errors import ProviderError
from orchestrator.models import CREDENTIAL_OPTION_KEYS, Agent, ModelCredential, Team
from orchestrator.providers import PROVIDERS

AGENT_FIELDS = ("name", "description", "provider", "model", "system_prompt", "temperature", "max_tokens", "max_turns",
                "options", "defences", "credential")
NAME = re.compile(r"^[-a-zA-Z0-9_]{1,64}\Z")  # (\Z: `$` also matches before a final newline)
# Options that read the host's environment or pick where keys are sent: instance operators only.
OPERATOR_OPTIONS = ("api_key_env", "base_url")


class OperatorOnlyOption(ActionError):
    """A team member set an option only an instance operator may set (422, naming it)."""

    code = "operator_only"
    status = 422


def check_options(provider: str, options: Any, *, operator: bool = False,
                  previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """`options`, validated. A team member may keep the operator-only options an agent already
    has, but not set or change them: keys and base URLs come from a model credential."""
    if not isinstance(options, dict):
        raise ActionError("options must be a JSON object, e.g. {} or {\"script\": …}", "options")
    for key in CREDENTIAL_OPTION_KEYS:
        if key in options:
            raise ActionError("set the agent's credential instead", f"options.{key}")
    for key in OPERATOR_OPTIONS:
        if not operator and key in options and options[key] != (previous or {}).get(key):
            raise OperatorOnlyOption(f"options.{key} is reserved to instance operators; give the agent a "
                                     "model credential (with its own base URL) instead", f"options.{key}")
    if provider == "scripted" and "script" in options:
        from orchestrator.providers.scripted import parse_script

        try:
            parse_script(options["script"])
        except ProviderError as exc:
            raise ActionError(str(exc).removeprefix("invalid scripted-provider script: "), "options") from None
    return options


def check_credential_choice(team: Team, provider: str, credential: Any) -> ModelCredential | None:
    """The credential (an instance, id or None) if the team may use it with `provider`."""
    if credential in (None, ""):
        return None
    pk = credential.pk if isinstance(credential, ModelCredential) else credential
    try:
        found = ModelCredential.usable_by(team.pk).filter(pk=int(pk)).first()
    except (TypeError, ValueError):
        found = None
    if found is None:
        raise ActionError("no such model credential for this team", "credential")
    if found.provider != provider:
        raise ActionError(f"that credential is for {found.provider}, not {provider}", "credential")
    return found


def check_agent(team: Team, fields: dict[str, Any], agent: Agent | None = None, *,
                operator: bool = False) -> dict[str, Any]:
    """The fields, validated; raises ActionError naming the first bad one. `operator`: the
    actor is an instance operator (may set `options.api_key_env`/`options.base_url`)."""
    unknown = set(fields) - set(AGENT_FIELDS)
    if unknown:
        raise ActionError(f"unknown agent fields: {', '.join(sorted(unknown))}", sorted(unknown)[0])
    name = fields.get("name", agent.name if agent else "")
    if agent is not None and name != agent.name:
        raise ActionError("pipelines and grants refer to an agent by name; it cannot change", "name")
    if not NAME.match(name or ""):
        raise ActionError("use letters, digits, dashes and underscores (at most 64)", "name")
    if Agent.objects.filter(team=team, name=name).exclude(pk=agent.pk if agent else None).exists():
        raise ActionError(f"an agent named {name!r} exists already", "name")
    provider = fields.get("provider", agent.provider if agent else "scripted")
    if provider not in PROVIDERS:
        raise ActionError(f"unknown provider {provider!r}; one of {', '.join(sorted(PROVIDERS))}", "provider")
    if "model" in fields and not str(fields["model"]).strip():
        raise ActionError("name the model", "model")
    temperature = fields.get("temperature")
    if temperature is not None and not 0 <= temperature <= 2:
        raise ActionError("temperature is between 0 and 2", "temperature")
    for field, top in (("max_tokens", 1_000_000), ("max_turns", 200)):
        if field in fields and not 1 <= fields[field] <= top:
            raise ActionError(f"{field.replace('_', ' ')} is between 1 and {top:,}", field)
    if "options" in fields:
        check_options(provider, fields["options"], operator=operator, previous=agent.options if agent else None)
    if "credential" in fields or (agent is not None and agent.credential_id and "provider" in fields):
        fields["credential"] = check_credential_choice(
            team, provider, fields["credential"] if "credential" in fields else agent.credential_id)
    if "defences" in fields:
        try:
            fields["defences"] = Defences.parse(fields["defences"]).model_dump(exclude_defaults=True, mode="json")
        except DefenceError as exc:
            raise ActionError(str(exc), "defences") from None
    return fields


def check_agent_unchanged(agent: Agent, base_updated_at: datetime) -> None:
    """Conflict unless the agent is still as it was at `base_updated_at` (locked until the transaction ends)."""
    current = Agent.objects.select_for_update().filter(pk=agent.pk).values_list("updated_at", flat=True).first()
    if current is None:
        raise Conflict(f"agent {agent.name!r} was deleted after this edit started: nothing was saved", "base_updated_at")
    if current != base_updated_at:
        raise Conflict(f"agent {agent.name!r} was saved by someone else at {current:%Y-%m-%d %H:%M:%S} UTC, after this "
                       "edit started: nothing was saved; open the agent again and apply your changes there",
                       "base_updated_at")


@transaction.atomic
def do_save_agent(team: Team, fields: dict[str, Any], agent: Agent | None = None, *, operator: bool = False,
                  base_updated_at: datetime | None = None) -> Agent:
    """Create an agent, or update `agent` (which must belong to `team`). Runs already started
    keep the configuration they loaded; the next run uses the new one.

    `base_updated_at`: the agent's `updated_at` when the edit started. If it was saved since,
    Conflict, and nothing is saved: an edit page opened before another builder's save wrote
    back every field it showed, silently undoing that save."""
    if agent is not None and agent.team_id != team.pk:
        raise ActionError("no such agent in this team", "name")
    checked = check_agent(team, fields, agent, operator=operator)
    if agent is None:
        return do_create_agent(team, checked.pop("name"), **checked)
    if base_updated_at is not None:
        check_agent_unchanged(agent, base_updated_at)
    for field, value in checked.items():
        setattr(agent, field, value)
    agent.save()
    return agent

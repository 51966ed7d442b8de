"""Creating and editing agents from validated fields.

`check_agent` holds the rules a form or an API body must meet: a slug name unique in the
team, a registered provider, numbers in range, and `options` a JSON object whose provider
part is well formed (for the scripted provider, its `script`).
"""

from __future__ import annotations

import re
from typing import Any

from django.db import transaction

from orchestrator.actions.errors import ActionError
from orchestrator.actions.teams import do_create_agent
from orchestrator.engine.defences import DefenceError, Defences
from orchestrator.engine.errors import ProviderError
from orchestrator.models import Agent, Team
from orchestrator.providers import PROVIDERS

AGENT_FIELDS = ("name", "description", "provider", "model", "system_prompt", "temperature", "max_tokens", "max_turns",
                "options", "defences")
NAME = re.compile(r"^[-a-zA-Z0-9_]{1,64}$")


def check_options(provider: str, options: Any) -> dict[str, Any]:
    if not isinstance(options, dict):
        raise ActionError("options must be a JSON object, e.g. {} or {\"base_url\": \"…\"}", "options")
    if provider == "scripted" and "script" in options:
        from orchestrator.providers.scripted import parse_script

        try:
            parse_script(options["script"])
        except ProviderError as exc:
            raise ActionError(str(exc).removeprefix("invalid scripted-provider script: "), "options") from None
    return options


def check_agent(team: Team, fields: dict[str, Any], agent: Agent | None = None) -> dict[str, Any]:
    """The fields, validated; raises ActionError naming the first bad one."""
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
    check_options(provider, fields.get("options", agent.options if agent else {}))
    if "defences" in fields:
        try:
            fields["defences"] = Defences.parse(fields["defences"]).model_dump(exclude_defaults=True, mode="json")
        except DefenceError as exc:
            raise ActionError(str(exc), "defences") from None
    return fields


@transaction.atomic
def do_save_agent(team: Team, fields: dict[str, Any], agent: Agent | None = None) -> Agent:
    """Create an agent, or update `agent` (which must belong to `team`). Runs already started
    keep the configuration they loaded; the next run uses the new one."""
    if agent is not None and agent.team_id != team.pk:
        raise ActionError("no such agent in this team", "name")
    checked = check_agent(team, fields, agent)
    if agent is None:
        return do_create_agent(team, checked.pop("name"), **checked)
    for field, value in checked.items():
        setattr(agent, field, value)
    agent.save()
    return agent

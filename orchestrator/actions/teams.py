"""Teams, memberships and agents."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils.text import slugify

from orchestrator.actions.errors import ActionError, NotAllowed
from orchestrator.models import Agent, Membership, Role, Team
from orchestrator.providers import PROVIDERS


def access_team(user: AbstractBaseUser, team_id: int, role: str = Role.VIEWER) -> Team:
    """The team, if `user` is a member with at least `role`."""
    membership = Membership.objects.select_related("team").filter(team_id=team_id, user_id=user.pk).first()
    if membership is None or not membership.has_role(role):
        raise NotAllowed(f"you need the {role} role in this team")
    return membership.team


@transaction.atomic
def do_create_team(name: str, owner: AbstractBaseUser, slug: str = "") -> Team:
    team = Team.objects.create(name=name, slug=slug or slugify(name))
    Membership.objects.create(team=team, user=owner, role=Role.OWNER)
    return team


def do_add_member(team: Team, user: AbstractBaseUser, role: str) -> Membership:
    if role not in Role.values:
        raise ActionError(f"unknown role {role!r}; one of {', '.join(Role.values)}", "role")
    membership, _ = Membership.objects.update_or_create(team=team, user=user, defaults={"role": role})
    return membership


def do_create_agent(team: Team, name: str, **fields: Any) -> Agent:
    provider = fields.get("provider", "scripted")
    if provider not in PROVIDERS:
        raise ActionError(f"unknown provider {provider!r}; one of {', '.join(sorted(PROVIDERS))}", "provider")
    if Agent.objects.filter(team=team, name=name).exists():
        raise ActionError(f"an agent named {name!r} exists already", "name")
    return Agent.objects.create(team=team, name=name, **fields)

"""Template context for every page: teams for the switcher, the role, and nav counts."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from dashboard.access import current_membership, memberships
from dashboard.queries import pending_count
from orchestrator.models import Role


def team_context(request: HttpRequest) -> dict[str, Any]:
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    membership = current_membership(request)
    if membership is None:
        return {"teams": []}
    pending = pending_count(membership.team_id)
    return {
        "teams": [m.team for m in memberships(request)],
        "current_team": membership.team,
        "role": membership.role,
        "can_build": membership.has_role(Role.BUILDER),
        "can_review": membership.has_role(Role.REVIEWER),
        "review_count": pending,
    }

"""Template context for every page: teams for the switcher, the role, and nav counts."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from dashboard.access import current_membership, memberships
from orchestrator.models import ReviewItem, Role


def team_context(request: HttpRequest) -> dict[str, Any]:
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    membership = current_membership(request)
    if membership is None:
        return {"teams": []}
    pending = ReviewItem.objects.filter(team_id=membership.team_id, status=ReviewItem.Status.PENDING).count()
    return {
        "teams": [m.team for m in memberships(request)],
        "current_team": membership.team,
        "role": membership.role,
        "can_build": membership.has_role(Role.BUILDER),
        "can_review": membership.has_role(Role.REVIEWER),
        "review_count": pending,
    }

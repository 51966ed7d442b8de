"""The current team and the caller's role in it, for every dashboard page.

The team comes from the session (switched with the team switcher), defaulting to the
user's first team. `team_view(role)` guards a view: signed in, member of the current
team with at least `role`; it sets `request.team` and `request.membership`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from orchestrator.models import Membership, Role

SESSION_KEY = "team_id"


def memberships(request: HttpRequest) -> list[Membership]:
    if not hasattr(request, "_memberships"):
        request._memberships = list(Membership.objects.filter(user=request.user).select_related("team").order_by("team__name"))
    return request._memberships


def current_membership(request: HttpRequest) -> Membership | None:
    found = memberships(request)
    if not found:
        return None
    wanted = request.session.get(SESSION_KEY)
    return next((m for m in found if m.team_id == wanted), found[0])


def team_view(role: str = Role.VIEWER) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @login_required
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            membership = current_membership(request)
            if membership is None:
                return render(request, "dashboard/no_team.html", status=403)
            if not membership.has_role(role):
                raise PermissionDenied(f"this needs the {role} role in {membership.team.name}")
            request.team = membership.team
            request.membership = membership
            return view(request, *args, **kwargs)

        return wrapper

    return decorate


def can(request: HttpRequest, role: str) -> bool:
    membership = getattr(request, "membership", None)
    return membership is not None and membership.has_role(role)

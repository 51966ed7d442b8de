"""The current team and the caller's role in it, for every dashboard page.

The team comes from the session (switched with the team switcher), defaulting to the
user's first team. `team_view(action)` guards a view with the policy table (authz.policy):
signed in, member of the current team, and allowed the action; it sets `request.team` and
`request.membership`. The action enforced is the one the page's URL name has in
`authz.routes.URL_ROUTES`: the table decides, and a page without an entry is refused. The
decorator's own argument names the same action for the reader, and
tests/test_policy_coverage.py checks that the two agree.
`can(request, action)` answers the same question for showing or hiding a button.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from authz.policy import (
    OPERATOR,
    POLICY,
    ROLE_RANK,
    Actor,
    PolicyDenied,
    check_action,
    is_instance_operator,
)
from authz.routes import url_action
from orchestrator.models import Membership

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


def actor(request: HttpRequest, membership: Membership | None = None) -> Actor:
    """The signed-in user as the policy sees them in the current team (a session has every scope)."""
    membership = membership or getattr(request, "membership", None)
    return Actor(role=membership.role if membership else None, scopes=None, is_operator=is_instance_operator(request.user))


def page_action(request: HttpRequest) -> str:
    """The action the table gives this page's URL name; a page without an entry is refused."""
    match = getattr(request, "resolver_match", None)
    found = url_action(match.namespace, match.url_name) if match is not None else None
    if found is None:
        name = match.view_name if match is not None else request.path
        raise PermissionDenied(f"the page {name} has no entry in the policy table (authz.routes.URL_ROUTES)")
    return found


def _check(request: HttpRequest, membership: Membership | None, action: str) -> None:
    try:
        check_action(actor(request, membership), action)
    except PolicyDenied as exc:
        raise PermissionDenied(f"{exc.message} ({membership.team.name})" if membership else exc.message) from None


def team_view(action: str = "team.view") -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Guard a team page with a policy action (see authz.policy.POLICY)."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @login_required
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            membership = current_membership(request)
            if membership is None:
                return render(request, "dashboard/no_team.html", status=403)
            _check(request, membership, page_action(request))
            request.team = membership.team
            request.membership = membership
            return view(request, *args, **kwargs)

        wrapper.policy_action = action  # type: ignore[attr-defined]
        return wrapper

    return decorate


def operator_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Guard an instance-level page: signed in as an instance operator (no team needed)."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        membership = current_membership(request)
        _check(request, membership, page_action(request))
        request.team = membership.team if membership else None
        request.membership = membership
        return view(request, *args, **kwargs)

    wrapper.policy_action = OPERATOR  # type: ignore[attr-defined]
    return wrapper


def can(request: HttpRequest, action: str) -> bool:
    """Whether the current member may do `action` (a policy action, or a bare role name)."""
    membership = getattr(request, "membership", None)
    if membership is None:
        return False
    if action in ROLE_RANK and action not in POLICY:
        return membership.has_role(action)
    try:
        check_action(actor(request, membership), action)
    except PolicyDenied:
        return False
    return True

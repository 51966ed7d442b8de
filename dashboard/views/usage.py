"""Limits & usage: the team's rate limits and budgets (owners and builders edit), and charts
of tokens, cost, runs and errors per day over the last 30 days."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.views.decorators.http import require_POST

from dashboard import queries
from dashboard.access import can, team_view
from mcpgateway.whole_numbers import whole
from orchestrator.actions.errors import ActionError
from orchestrator.actions.limits import do_delete_limit, do_save_limit
from orchestrator.models import Limit, LimitKind, LimitScope


def _page(request: HttpRequest, status: int = 200, editing: Limit | None = None, **extra: Any) -> HttpResponse:
    team_id = request.team.pk
    form = extra.pop("form", None)
    if form is None and editing is not None:
        form = {"scope": editing.scope, "kind": editing.kind, "value": _plain(editing.value),
                "target": f"{editing.scope}:{editing.target_value}" if editing.scope != LimitScope.TEAM else ""}
    return render(request, "dashboard/usage/index.html", {
        "limits": queries.limits(team_id),
        "targets": queries.limit_targets(team_id),
        "scopes": LimitScope.choices,
        "kinds": LimitKind.choices,
        "can_edit": can(request, "limit.manage"),
        "data": queries.usage_data(team_id),
        "editing": editing,
        "form": form or {"scope": LimitScope.TEAM},
        **extra,
    }, status=status)


def _plain(value: Any) -> str:
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


@team_view("usage.view")
def index(request: HttpRequest) -> HttpResponse:
    return _page(request)


def _limit(request: HttpRequest, pk: int) -> Limit:
    row = next((r for r in queries.limits(request.team.pk) if r.pk == pk), None)
    if row is None:
        raise Http404("no such limit in this team")
    return row


def _save(request: HttpRequest, editing: Limit | None) -> HttpResponse:
    post = request.POST
    scope = post.get("scope", "")
    target = post.get("target", "")
    target_scope, _, raw_id = target.partition(":")
    try:
        if scope != LimitScope.TEAM and target and target_scope != scope:
            raise ActionError(f"choose a target of the kind “{scope.replace('_', ' ')}”", "target")
        do_save_limit(request.team, scope, post.get("kind", ""), post.get("value", ""),
                      whole(raw_id), limit=editing)
    except ActionError as exc:
        return _page(request, status=400, editing=editing, form=post.dict(), error=exc.message, error_field=exc.field)
    messages.success(request, "Limit saved.")
    return redirect("usage")


@require_POST
@team_view("limit.manage")
def limit_add(request: HttpRequest) -> HttpResponse:
    return _save(request, None)


@team_view("limit.manage")
def limit_edit(request: HttpRequest, pk: int) -> HttpResponse:
    editing = _limit(request, pk)
    if request.method == "POST":
        return _save(request, editing)
    return _page(request, editing=editing)


@require_POST
@team_view("limit.manage")
def limit_delete(request: HttpRequest, pk: int) -> HttpResponse:
    do_delete_limit(get_object_or_404(Limit, pk=pk, team=request.team))
    messages.success(request, "Limit deleted.")
    return redirect("usage")


urlpatterns = [
    path("", index, name="usage"),
    path("limits/", limit_add, name="usage-limit-add"),
    path("limits/<int:pk>/edit/", limit_edit, name="usage-limit-edit"),
    path("limits/<int:pk>/delete/", limit_delete, name="usage-limit-delete"),
]

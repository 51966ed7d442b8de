"""The server catalogue in the tools area: teams add servers from operator templates, and
instance operators manage the templates.

A team's form is generated from the template's parameter schema; secret parameters are
password inputs that are never filled back (left empty, the stored secret is kept).
"""

from __future__ import annotations

from typing import Any

import yaml
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.views.decorators.http import require_POST

from dashboard.access import can, team_view
from mcpgateway.actions.templates import (
    do_delete_template,
    do_install_template,
    do_save_template,
    do_update_installed,
    template_parameters,
)
from mcpgateway.authority import is_instance_operator
from mcpgateway.errors import GatewayError
from mcpgateway.models import ServerTemplate, ToolServer
from orchestrator.models import Role

EXAMPLE = """name: github
description: GitHub issues and pull requests
command: npx
args: [-y, "@modelcontextprotocol/server-github"]
env: {GITHUB_PERSONAL_ACCESS_TOKEN: "{{token}}"}
parameters:
  - {name: token, kind: secret, label: GitHub token}
env_allow: []
"""


def _page(request: HttpRequest, template: str, context: dict[str, Any], status: int = 200) -> HttpResponse:
    return render(request, template, {"section": "catalogue", "can_build": can(request, Role.BUILDER),
                                      "is_operator": is_instance_operator(request.user), **context}, status=status)


def _fields(template: ServerTemplate, values: dict[str, Any], error_field: str = "") -> list[dict[str, Any]]:
    """The form's inputs, from the parameter schema; secrets never carry a value."""
    fields = []
    for param in template_parameters(template):
        fields.append({"name": param.name, "label": param.label or param.name, "kind": param.kind,
                       "description": param.description, "required": param.required,
                       "value": "" if param.kind == "secret" else values.get(param.name, param.default or ""),
                       "prefixes": param.path_prefixes, "pattern": param.pattern or "",
                       "error": error_field == f"parameters.{param.name}"})
    return fields


def _posted(request: HttpRequest, template: ServerTemplate) -> dict[str, str]:
    return {p.name: request.POST.get(f"param-{p.name}", "") for p in template_parameters(template)}


@team_view("catalogue.view")
def catalogue(request: HttpRequest) -> HttpResponse:
    installed = ToolServer.objects.filter(team_id=request.team.pk, template__isnull=False).select_related("template")
    return _page(request, "dashboard/tools/catalogue.html", {
        "templates": [{"template": t, "fields": _fields(t, {})} for t in ServerTemplate.objects.all()],
        "installed": installed,
    })


@team_view("server.add_from_template")
def install(request: HttpRequest, pk: int) -> HttpResponse:
    template = get_object_or_404(ServerTemplate, pk=pk)
    form = {"name": template.name, "description": ""}
    if request.method == "POST":
        values = _posted(request, template)
        form = {"name": request.POST.get("name", "").strip(), "description": request.POST.get("description", "").strip()}
        try:
            server = do_install_template(request.team.pk, template, form["name"], values, form["description"])
        except GatewayError as exc:
            return _page(request, "dashboard/tools/catalogue_form.html", {
                "template": template, "form": form, "fields": _fields(template, values, exc.field),
                "error": exc.message, "error_field": exc.field}, status=exc.status if exc.status != 400 else 422)
        messages.success(request, f"Added {server.name} from the catalogue; it starts in a moment.")
        return redirect("tools")
    return _page(request, "dashboard/tools/catalogue_form.html",
                 {"template": template, "form": form, "fields": _fields(template, {})})


@team_view("server.add_from_template")
def edit(request: HttpRequest, pk: int) -> HttpResponse:
    """Change an installed server's parameters and secrets (never its command)."""
    server = get_object_or_404(ToolServer.objects.select_related("template"), pk=pk, team_id=request.team.pk,
                               template__isnull=False)
    template = server.template
    form = {"name": server.name, "description": server.description}
    if request.method == "POST":
        values = _posted(request, template)
        description = request.POST.get("description", "").strip()
        try:
            do_update_installed(server, values, description)
        except GatewayError as exc:
            return _page(request, "dashboard/tools/catalogue_form.html", {
                "template": template, "server": server, "form": {**form, "description": description},
                "fields": _fields(template, values, exc.field), "error": exc.message, "error_field": exc.field},
                status=422)
        messages.success(request, f"Saved {server.name}.")
        return redirect("tools")
    return _page(request, "dashboard/tools/catalogue_form.html", {
        "template": template, "server": server, "form": form, "fields": _fields(template, server.parameters or {})})


# --- instance operators ---------------------------------------------------------------------------


def _operator(request: HttpRequest) -> None:
    if not is_instance_operator(request.user):
        raise PermissionDenied("managing the server catalogue is reserved to instance operators")


def _manage(request: HttpRequest, status: int = 200, **extra: Any) -> HttpResponse:
    return _page(request, "dashboard/tools/catalogue_manage.html", {
        "templates": ServerTemplate.objects.all(), "text": EXAMPLE, **extra}, status=status)


@team_view("template.manage")
def manage(request: HttpRequest) -> HttpResponse:
    _operator(request)
    text = EXAMPLE
    if request.GET.get("edit"):
        template = get_object_or_404(ServerTemplate, name=request.GET["edit"])
        data = {"name": template.name, "description": template.description, "command": template.command,
                "args": template.args, "env": template.env, "cwd": template.cwd, "parameters": template.parameters,
                "env_allow": template.env_allow, "caller_context": template.caller_context,
                "call_timeout_s": template.call_timeout_s}
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    return _manage(request, text=text)


@require_POST
@team_view("template.manage")
def manage_save(request: HttpRequest) -> HttpResponse:
    _operator(request)
    text = request.POST.get("template", "")
    try:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise GatewayError(f"not valid YAML or JSON: {exc}", "template") from None
        if not isinstance(data, dict):
            raise GatewayError("write the template as a mapping (name, command, args, env, parameters, …)", "template")
        template = do_save_template(data, operator=True)
    except GatewayError as exc:
        return _manage(request, status=422, text=text, error=exc.message, error_field=exc.field)
    messages.success(request, f"Saved the template {template.name}; servers installed from it follow.")
    return redirect("tools-catalogue-manage")


@require_POST
@team_view("template.manage")
def manage_delete(request: HttpRequest, pk: int) -> HttpResponse:
    _operator(request)
    template = get_object_or_404(ServerTemplate, pk=pk)
    try:
        do_delete_template(template, operator=True, force=request.POST.get("force") == "on")
    except GatewayError as exc:
        messages.error(request, exc.message)
        return redirect("tools-catalogue-manage")
    messages.success(request, f"Removed the template {template.name}.")
    return redirect("tools-catalogue-manage")


urlpatterns = [
    path("", catalogue, name="tools-catalogue"),
    path("<int:pk>/add/", install, name="tools-catalogue-install"),
    path("server/<int:pk>/", edit, name="tools-catalogue-edit"),
    path("manage/", manage, name="tools-catalogue-manage"),
    path("manage/save/", manage_save, name="tools-catalogue-save"),
    path("manage/<int:pk>/delete/", manage_delete, name="tools-catalogue-delete"),
]

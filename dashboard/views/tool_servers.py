"""Adding, changing, testing, restarting, disabling and removing a team's tool servers.

Builders and owners add remote (HTTP/SSE) servers; only instance operators set what runs on
a host (stdio command, args, env, cwd). The form only parses; `do_save_server` decides
(it refuses, naming the field, what the caller may not set). Servers installed from the
catalogue are changed on the catalogue's page.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.views.decorators.http import require_POST

from dashboard.access import can, team_view
from mcpgateway.actions.server_lifecycle import (
    do_restart_server,
    do_set_server_enabled,
    probe_server,
)
from mcpgateway.actions.servers import do_delete_server, do_save_server
from mcpgateway.actions.templates import shown_env
from mcpgateway.authority import is_instance_operator
from mcpgateway.errors import GatewayError
from mcpgateway.models import ToolServer, Transport


def _pairs(text: str, field: str) -> dict[str, str]:
    """`NAME=value` lines; blank lines and `#` comments skipped."""
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=") if "=" in line else line.partition(":")
        if not sep or not name.strip():
            raise GatewayError(f"line {number}: write NAME=value", field)
        found[name.strip()] = value.strip()
    return found


def _form_values(server: ToolServer | None, operator: bool) -> dict[str, Any]:
    if server is None:
        return {"transport": Transport.HTTP, "call_timeout_s": "60", "enabled": True}
    return {
        "name": server.name, "description": server.description, "transport": server.transport, "url": server.url,
        "headers": "\n".join(f"{k}={v}" for k, v in (server.headers or {}).items()),
        "command": server.command, "args": "\n".join(server.args or []),
        "env": "\n".join(f"{k}={v}" for k, v in shown_env(server, operator).items()), "cwd": server.cwd,
        "call_timeout_s": f"{server.call_timeout_s:g}", "enabled": server.enabled,
    }


def _fields(post: Any, operator: bool) -> tuple[str, dict[str, Any], dict[str, str]]:
    """(name, do_save_server fields, secrets) from the form; GatewayError names a bad field."""
    transport = post.get("transport", Transport.HTTP)
    fields: dict[str, Any] = {"description": post.get("description", "").strip(), "transport": transport,
                              "enabled": post.get("enabled") == "on"}
    raw_timeout = post.get("call_timeout_s", "").strip() or "60"
    try:
        fields["call_timeout_s"] = float(raw_timeout)
    except ValueError:
        raise GatewayError("the call timeout is a number of seconds", "call_timeout_s") from None
    if not 0 < fields["call_timeout_s"] <= 3600:
        raise GatewayError("the call timeout is between 0 and 3600 seconds", "call_timeout_s")
    if transport == Transport.STDIO:
        fields.update(command=post.get("command", "").strip(),
                      args=[a.strip() for a in post.get("args", "").splitlines() if a.strip()],
                      env=_pairs(post.get("env", ""), "env"), cwd=post.get("cwd", "").strip())
    else:
        fields.update(url=post.get("url", "").strip(), headers=_pairs(post.get("headers", ""), "headers"))
    return post.get("name", "").strip(), fields, _pairs(post.get("secrets", ""), "secrets")


def _server(request: HttpRequest, pk: int) -> ToolServer:
    return get_object_or_404(ToolServer.objects.select_related("template"), pk=pk, team_id=request.team.pk)


def _form_page(request: HttpRequest, server: ToolServer | None) -> HttpResponse:
    operator = is_instance_operator(request.user)
    if server is not None and server.template_id:
        return redirect("tools-catalogue-edit", pk=server.pk)
    values, error, status = _form_values(server, operator), None, 200
    if request.method == "POST":
        values = {**request.POST.dict(), "enabled": request.POST.get("enabled") == "on"}
        try:
            name, fields, secrets = _fields(request.POST, operator)
            if server is not None:
                name = server.name
            elif ToolServer.objects.filter(team_id=request.team.pk, name=name).exists():
                raise GatewayError(f"the team already has a server named {name!r}", "name")
            saved = do_save_server(request.team.pk, name, secrets, operator=operator,
                                   env_allow=server.env_allow if server is not None and operator else None, **fields)
        except GatewayError as exc:
            error, status = {"field": exc.field, "message": exc.message}, (403 if exc.status == 403 else 400)
        else:
            messages.success(request, f"Saved the server {saved.name}. Test it to see its tools.")
            return redirect("tools-server", pk=saved.pk)
    return render(request, "dashboard/tools/server_form.html", {
        "section": "servers", "server": server, "values": values, "error": error, "operator": operator,
        "transports": Transport.choices if operator else [c for c in Transport.choices if c[0] != Transport.STDIO],
        "secret_names": sorted(server.secrets.values_list("name", flat=True)) if server else [],
    }, status=status)


@team_view("server.create_remote")
def create(request: HttpRequest) -> HttpResponse:
    return _form_page(request, None)


@team_view("server.create_remote")
def edit(request: HttpRequest, pk: int) -> HttpResponse:
    return _form_page(request, _server(request, pk))


@team_view("server.view")
def detail(request: HttpRequest, pk: int) -> HttpResponse:
    """The server's stored health, its last error and its tools; connecting is `test`'s (a POST)."""
    server = _server(request, pk)
    return render(request, "dashboard/tools/server_test.html", {
        "section": "servers", "server": server,
        "can_build": can(request, "server.create_remote"), "can_try": can(request, "tool.try"),
        "can_test": can(request, "server.restart"),
        "tools": server.tools.exclude(status="removed").order_by("name"),
    })


@require_POST
@team_view("server.restart")
def test(request: HttpRequest, pk: int) -> HttpResponse:
    """Connect (or reuse the running connection), then show what was found on the server's page.

    A POST for builders and up: connecting starts the team's enabled servers in this process and
    can take seconds, which a viewer (or a link on another site) must not trigger."""
    server = _server(request, pk)
    if not server.enabled:
        messages.error(request, f"{server.name} is disabled; enable it first.")
        return redirect("tools-server", pk=server.pk)
    probe = probe_server(server)
    if probe.ok:
        messages.success(request, f"{server.name} is up: {len(probe.tools)} tool{'s' if len(probe.tools) != 1 else ''} discovered.")
    else:
        messages.error(request, f"{server.name} is {probe.health}" + (f": {probe.error}" if probe.error else "."))
    return redirect("tools-server", pk=server.pk)


def _refused(request: HttpRequest, exc: GatewayError) -> HttpResponse:
    return render(request, "dashboard/tools/server_refused.html", {"section": "servers", "message": exc.message},
                  status=exc.status if exc.status == 403 else 400)


@require_POST
@team_view("server.restart")
def restart(request: HttpRequest, pk: int) -> HttpResponse:
    server = _server(request, pk)
    if not server.enabled:
        messages.error(request, f"{server.name} is disabled; enable it first.")
        return redirect("tools")
    try:
        do_restart_server(server, operator=is_instance_operator(request.user))
    except GatewayError as exc:
        return _refused(request, exc)
    messages.success(request, f"Restarted {server.name}.")
    return redirect("tools-server", pk=server.pk)


@require_POST
@team_view("server.restart")
def set_enabled(request: HttpRequest, pk: int) -> HttpResponse:
    server = _server(request, pk)
    enabled = request.POST.get("enabled") == "1"
    try:
        do_set_server_enabled(server, enabled, operator=is_instance_operator(request.user))
    except GatewayError as exc:
        return _refused(request, exc)
    messages.success(request, f"{server.name} {'enabled' if enabled else 'disabled: its process is stopped'}.")
    return redirect("tools")


@team_view("server.delete")
def delete(request: HttpRequest, pk: int) -> HttpResponse:
    """GET asks for confirmation; POST with `confirm` removes the server, its tools and grants."""
    server = _server(request, pk)
    if request.method != "POST" or request.POST.get("confirm") != "yes":
        return render(request, "dashboard/tools/server_delete.html", {
            "section": "servers", "server": server, "tools": server.tools.count(), "grants": server.grants.count()})
    name = server.name
    try:
        do_delete_server(server)
    except GatewayError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Removed the server {name}.")
    return redirect("tools")


urlpatterns = [
    path("new/", create, name="tools-server-new"),
    path("<int:pk>/edit/", edit, name="tools-server-edit"),
    path("<int:pk>/", detail, name="tools-server"),
    path("<int:pk>/test/", test, name="tools-server-test"),
    path("<int:pk>/restart/", restart, name="tools-server-restart"),
    path("<int:pk>/enabled/", set_enabled, name="tools-server-enabled"),
    path("<int:pk>/delete/", delete, name="tools-server-delete"),
]

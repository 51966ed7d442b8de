"""The tools area: servers and their health, the catalogue (enable, approve held tools),
grants and API keys, the audit log, and importing/exporting the servers' config.

Everyone in the team reads; builders and owners change things.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import include, path, reverse
from django.views.decorators.http import require_POST

from dashboard import queries
from dashboard.access import can, team_view
from mcpgateway import queries as gateway
from mcpgateway.actions.access import (
    do_create_api_key,
    do_grant,
    do_revoke_api_key,
    do_revoke_grant,
)
from mcpgateway.actions.catalogue import do_approve_tool_definition, do_set_tool_enabled
from mcpgateway.actions.config_files import do_import_config, export_config
from mcpgateway.authority import is_instance_operator
from mcpgateway.crypto import decrypt, encrypt
from mcpgateway.errors import ConfigError, GatewayError
from mcpgateway.models import ApiKey, CallStatus, Grant, Tool, ToolServer, ToolStatus
from mcpgateway.whole_numbers import is_whole, whole
from orchestrator.models import Agent

AUDIT_PAGE = 50
NEW_KEY_SESSION = "new_api_key"
NEW_KEY_TTL_S = 60  # how long a new key's (encrypted) token waits in the session to be shown


def _page(request: HttpRequest, template: str, context: dict[str, Any], status: int = 200) -> HttpResponse:
    return render(request, template, {"can_build": can(request, "server.create_remote"), **context}, status=status)


# --- servers and the catalogue ----------------------------------------------------------------


@team_view("server.view")
def index(request: HttpRequest) -> HttpResponse:
    team_id = request.team.pk
    return _page(request, "dashboard/tools/index.html", {
        "section": "servers",
        "servers": gateway.servers(team_id),
        "tools": gateway.tools(team_id),
        "held": gateway.held_tools(team_id),
        "can_try": can(request, "tool.try"),
    })


@team_view("server.view")
def health(request: HttpRequest) -> HttpResponse:
    """The servers' health table alone; the page polls it."""
    return _page(request, "dashboard/tools/health.html", {"servers": gateway.servers(request.team.pk)})


def _tool(request: HttpRequest, pk: int) -> Tool:
    return get_object_or_404(Tool.objects.select_related("server"), pk=pk, server__team_id=request.team.pk)


@require_POST
@team_view("tool.manage")
def set_enabled(request: HttpRequest, pk: int) -> HttpResponse:
    tool = _tool(request, pk)
    enabled = request.POST.get("enabled") == "1"
    do_set_tool_enabled(tool, enabled)
    messages.success(request, f"{tool.qualified_name} {'enabled' if enabled else 'disabled'}.")
    return redirect(f"{reverse('tools')}#server-{tool.server_id}")


@require_POST
@team_view("tool.manage")
def approve_definition(request: HttpRequest, pk: int) -> HttpResponse:
    tool = _tool(request, pk)
    if tool.status != ToolStatus.HELD:
        messages.error(request, f"{tool.qualified_name} is not held for approval.")
    else:
        do_approve_tool_definition(tool)
        messages.success(request, f"Approved the new definition of {tool.qualified_name}; it is active again.")
    return redirect("tools")


# --- grants and API keys --------------------------------------------------------------------------


def _access(request: HttpRequest, status: int = 200, **extra: Any) -> HttpResponse:
    team_id = request.team.pk
    return _page(request, "dashboard/tools/access.html", {
        "section": "access",
        "grants": gateway.grants(team_id),
        "keys": queries.api_keys(team_id) if can(request, "apikey.view") else [],
        "can_manage_keys": can(request, "apikey.create"),
        "live_keys": queries.live_api_keys(team_id),
        "agents": queries.agents(team_id),
        "servers": ToolServer.objects.filter(team_id=team_id).prefetch_related("tools").order_by("name"),
        "scopes": ApiKey.Scope.choices,
        "grant_form": {},
        "key_form": {},
        **extra,
    }, status=status)


@team_view("grant.view")
def access(request: HttpRequest) -> HttpResponse:
    return _access(request)


def _grant_args(request: HttpRequest) -> dict[str, Any]:
    """The grant form as do_grant's arguments; GatewayError names the bad field."""
    team_id, post = request.team.pk, request.POST
    target = post.get("target", "")
    kind, _, raw_id = target.partition(":")
    if kind not in ("server", "tool") or not is_whole(raw_id):
        raise GatewayError("choose a server or a tool", "target")
    if kind == "server":
        server = ToolServer.objects.filter(team_id=team_id, pk=int(raw_id)).first()
        tool = None
    else:
        tool = Tool.objects.select_related("server").filter(server__team_id=team_id, pk=int(raw_id)).first()
        server = tool.server if tool else None
    if server is None:
        raise GatewayError(f"no such {kind} in this team", "target")
    args: dict[str, Any] = {"tool": tool, "require_approval": post.get("require_approval") == "on",
                            "network_access": post.get("network_access") == "on"}
    principal = post.get("principal", "")
    if principal == "agent":
        name = post.get("agent", "")
        if not Agent.objects.filter(team_id=team_id, name=name).exists():
            raise GatewayError("choose an agent of this team", "agent")
        args["agent"] = name
    elif principal == "api_key":
        raw_key = post.get("api_key", "")
        key = ApiKey.objects.filter(team_id=team_id, pk=int(raw_key), revoked_at__isnull=True).first() if is_whole(raw_key) else None
        if key is None:
            raise GatewayError("choose a live API key of this team", "api_key")
        args["api_key"] = key
    elif principal != "team":
        raise GatewayError("choose who the grant is for", "principal")
    raw_rate = post.get("calls_per_minute", "").strip()
    if raw_rate:
        if not is_whole(raw_rate):
            raise GatewayError("calls per minute is a whole number", "calls_per_minute")
        args["calls_per_minute"] = int(raw_rate)
    return {"server": server, **args}


@require_POST
@team_view("grant.create")
def grant_add(request: HttpRequest) -> HttpResponse:
    try:
        args = _grant_args(request)
        grant = do_grant(args.pop("server"), **args, operator=is_instance_operator(request.user))
    except GatewayError as exc:
        return _access(request, status=400, grant_error=exc.message, grant_error_field=exc.field,
                       grant_form=request.POST.dict())
    messages.success(request, f"Granted: {grant}.")
    return redirect("tools-access")


@require_POST
@team_view("grant.revoke")
def grant_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    grant = get_object_or_404(Grant.objects.select_related("server", "tool"), pk=pk, team_id=request.team.pk)
    label = str(grant)
    do_revoke_grant(grant)
    messages.success(request, f"Revoked: {label}.")
    return redirect("tools-access")


@require_POST
@team_view("apikey.create")
def key_create(request: HttpRequest) -> HttpResponse:
    name = request.POST.get("name", "").strip()
    scopes = request.POST.getlist("scopes")
    try:
        if not name:
            raise GatewayError("give the key a name", "name")
        if not scopes:
            raise GatewayError("choose at least one scope", "scopes")
        key, token = do_create_api_key(request.team.pk, name, request.user, scopes)
    except GatewayError as exc:
        return _access(request, status=400, key_error=exc.message, key_error_field=exc.field,
                       key_form={"name": name, "scopes": scopes})
    # Post/redirect/get: the token waits in the session for one page view, so reloading the
    # page shows nothing again and never creates a second key. The session is stored (in the
    # database or a cache), so the token goes there encrypted and only for NEW_KEY_TTL_S.
    request.session[NEW_KEY_SESSION] = {"id": key.pk, "sealed": encrypt(token),
                                        "expires": time.time() + NEW_KEY_TTL_S}
    return redirect("tools-key-created")


@team_view("apikey.create")
def key_created(request: HttpRequest) -> HttpResponse:
    """The new key's token, once: it is stored hashed and never shown again."""
    flash = request.session.pop(NEW_KEY_SESSION, None) or {}
    fresh = "sealed" in flash and float(flash.get("expires", 0)) > time.time()
    key = ApiKey.objects.filter(pk=flash.get("id"), team_id=request.team.pk).first() if fresh else None
    if key is None:
        messages.info(request, "That token was shown once and is gone; create a new key if it was lost.")
        return redirect("tools-access")
    response = _page(request, "dashboard/tools/key_created.html", {"section": "access", "key": key,
                                                                   "token": decrypt(flash["sealed"])})
    response["Cache-Control"] = "no-store"
    return response


@team_view("apikey.revoke")
def key_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    """GET asks for confirmation; POST with `confirm` revokes."""
    key = get_object_or_404(ApiKey, pk=pk, team_id=request.team.pk)
    if key.revoked_at is not None:
        messages.info(request, f"The key {key.name} is already revoked.")
        return redirect("tools-access")
    if request.method != "POST" or request.POST.get("confirm") != "yes":
        return _page(request, "dashboard/tools/key_revoke.html", {
            "section": "access", "key": key, "grants": Grant.objects.filter(api_key=key).count()})
    do_revoke_api_key(key)
    reason = request.POST.get("reason", "").strip()[:200]
    messages.success(request, f"Revoked the key {key.name} ({key.prefix}…)" + (f": {reason}." if reason else "."))
    return redirect("tools-access")


# --- audit log ----------------------------------------------------------------------------------


def _int(value: str | None) -> int | None:
    value = (value or "").strip()
    return whole(value)


@team_view("audit.view")
def audit(request: HttpRequest) -> HttpResponse:
    get = request.GET
    status = get.get("status") or None
    where = gateway.AuditFilter(
        run_id=_int(get.get("run")), agent=get.get("agent") or None, tool=get.get("tool", "").strip() or None,
        status=status if status in CallStatus.values else None, before_id=_int(get.get("before")),
    )
    rows = gateway.audit_log(request.team.pk, where, limit=AUDIT_PAGE)
    params = {k: v for k, v in (("run", get.get("run", "")), ("agent", get.get("agent", "")),
                                ("tool", get.get("tool", "")), ("status", get.get("status", ""))) if v}
    older = None
    if len(rows) == AUDIT_PAGE:
        older = "?" + urlencode({**params, "before": rows[-1].pk})
    return _page(request, "dashboard/tools/audit.html", {
        "section": "audit",
        "rows": rows,
        "filters": params,
        "paged": where.before_id is not None,
        "older_query": older,
        "statuses": CallStatus.choices,
        "agents": queries.agents(request.team.pk),
        "tool_names": gateway.tools(request.team.pk).exclude(status=ToolStatus.REMOVED),
    })


# --- config import / export ------------------------------------------------------------------------


def _secrets(text: str) -> dict[str, str]:
    """`NAME=value` lines into a dict; blank lines and `#` comments are skipped."""
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise ConfigError([{"field": "secrets", "message": f"line {number}: write NAME=value"}])
        found[name.strip()] = value.strip()
    return found


def _config(request: HttpRequest, status: int = 200, **extra: Any) -> HttpResponse:
    style = "claude" if request.GET.get("style") == "claude" else "yaml"
    return _page(request, "dashboard/tools/config.html", {
        "section": "config", "style": style, "exported": export_config(request.team.pk, style, operator=is_instance_operator(request.user)),
        "form": {}, "errors": [], **extra,
    }, status=status)


@team_view("server.view")
def config(request: HttpRequest) -> HttpResponse:
    return _config(request)


@require_POST
@team_view("server.import")
def config_import(request: HttpRequest) -> HttpResponse:
    text, secret_text = request.POST.get("config", ""), request.POST.get("secrets", "")
    try:
        if not text.strip():
            raise ConfigError([{"field": "config", "message": "paste an mcp_config.yaml or an mcpServers JSON file"}])
        servers = do_import_config(request.team.pk, text, _secrets(secret_text),
                                   operator=is_instance_operator(request.user))
    except ConfigError as exc:
        return _config(request, status=400, errors=exc.errors, form={"config": text})
    except GatewayError as exc:
        return _config(request, status=exc.status if exc.status == 403 else 400,
                       errors=[{"field": exc.field, "message": exc.message}], form={"config": text})
    messages.success(request, f"Imported {len(servers)} server{'s' if len(servers) != 1 else ''}: "
                              f"{', '.join(s.name for s in servers)}.")
    return redirect("tools")


@team_view("server.view")
def config_export(request: HttpRequest) -> HttpResponse:
    style = "claude" if request.GET.get("style") == "claude" else "yaml"
    name = "mcp_config.json" if style == "claude" else "mcp_config.yaml"
    response = HttpResponse(export_config(request.team.pk, style, operator=is_instance_operator(request.user)),
                            content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


urlpatterns = [
    path("", index, name="tools"),
    path("health/", health, name="tools-health"),
    path("tool/<int:pk>/enabled/", set_enabled, name="tools-tool-enabled"),
    path("tool/<int:pk>/approve/", approve_definition, name="tools-tool-approve"),
    path("access/", access, name="tools-access"),
    path("access/grants/", grant_add, name="tools-grant-add"),
    path("access/grants/<int:pk>/revoke/", grant_revoke, name="tools-grant-revoke"),
    path("access/keys/", key_create, name="tools-key-create"),
    path("access/keys/created/", key_created, name="tools-key-created"),
    path("access/keys/<int:pk>/revoke/", key_revoke, name="tools-key-revoke"),
    path("audit/", audit, name="tools-audit"),
    path("config/", config, name="tools-config"),
    path("config/import/", config_import, name="tools-config-import"),
    path("config/export/", config_export, name="tools-config-export"),
    path("catalogue/", include("dashboard.views.catalogue")),
    path("servers/", include("dashboard.views.tool_servers")),
    path("try/", include("dashboard.views.tool_try")),
]

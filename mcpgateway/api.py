"""The gateway's REST API: tool servers (and config import/export), tools, grants, API keys,
the audit log, and the approvals of /mcp calls. Every operation is scoped to the caller's team (`request.auth`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from ninja import Query, Router, Status

from mcpgateway import queries
from mcpgateway.actions.access import (
    do_create_api_key,
    do_grant,
    do_revoke_api_key,
    do_revoke_grant,
)
from mcpgateway.actions.approvals import do_decide_call_approval
from mcpgateway.actions.catalogue import do_approve_tool_definition, do_set_tool_enabled
from mcpgateway.actions.config_files import do_import_config, export_config
from mcpgateway.actions.servers import do_delete_server, do_save_server
from mcpgateway.actions.templates import (
    TemplateSpec,
    do_delete_template,
    do_install_template,
    do_save_template,
    do_update_installed,
    shown_env,
)
from mcpgateway.api_caller import Caller
from mcpgateway.errors import GatewayError
from mcpgateway.models import ApiKey, Grant, ServerTemplate, Tool, ToolApproval, ToolServer
from mcpgateway.schemas import (
    ApiKeyIn,
    ApiKeyOut,
    ApprovalDecisionIn,
    ApprovalOut,
    AuditOut,
    ConfigIn,
    GrantIn,
    GrantOut,
    InstallIn,
    ParametersIn,
    ServerIn,
    ServerOut,
    TemplateOut,
    ToolOut,
)

router = Router(tags=["gateway"])


def caller(request: HttpRequest) -> Caller:
    return request.auth  # type: ignore[return-value]


def _shown(server: ToolServer, c: Caller) -> ToolServer:
    """The server as this caller may read it: a team member is not shown the operator's text in
    an env value (`templates.shown_env`). The instance is only answered, never saved."""
    server.env = shown_env(server, c.operator)
    return server


@router.get("/servers", response=list[ServerOut])
def list_servers(request: HttpRequest):
    c = caller(request).require("read")
    return [_shown(s, c) for s in queries.servers(c.team_id).select_related("template")]


@router.post("/servers", response={201: ServerOut})
def save_server(request: HttpRequest, body: ServerIn):
    """Create or update a server by name; literal env/header values are moved into encrypted secrets."""
    c = caller(request).require("admin", "builder")
    fields = body.dict()
    name, secrets, env_allow = fields.pop("name"), fields.pop("secrets"), fields.pop("env_allow")
    return Status(201, _shown(do_save_server(c.team_id, name, secrets=secrets, operator=c.operator, env_allow=env_allow,
                                             **fields), c))


@router.post("/servers/import", response={201: list[ServerOut]})
def import_config(request: HttpRequest, body: ConfigIn):
    """`mcp_config.yaml` or Claude `mcpServers` JSON; all or nothing. Stdio entries: instance operators only."""
    c = caller(request).require("admin", "builder")
    return Status(201, do_import_config(c.team_id, body.text, body.secrets, operator=c.operator))


@router.put("/servers/{server_id}/parameters", response=ServerOut)
def update_installed(request: HttpRequest, server_id: int, body: ParametersIn):
    """A catalogue-installed server's parameters and secrets: the only things a team changes on it."""
    c = caller(request).require("admin", "builder")
    server = get_object_or_404(ToolServer.objects.select_related("template"), pk=server_id, team_id=c.team_id)
    return _shown(do_update_installed(server, dict(body.parameters), body.description), c)


def _template_out(template: ServerTemplate, team_id: int) -> dict[str, Any]:
    return {"id": template.pk, "name": template.name, "description": template.description, "command": template.command,
            "args": template.args, "env_names": sorted(template.env or {}), "cwd": template.cwd,
            "parameters": template.parameters, "env_allow": template.env_allow, "caller_context": template.caller_context,
            "call_timeout_s": template.call_timeout_s,
            "installed": template.instances.filter(team_id=team_id).count()}


@router.get("/templates", response=list[TemplateOut])
def list_templates(request: HttpRequest):
    """The server catalogue: what a team may install (operators maintain it)."""
    team_id = caller(request).require("read").team_id
    return [_template_out(t, team_id) for t in ServerTemplate.objects.all()]


@router.post("/templates", response={201: TemplateOut})
def save_template(request: HttpRequest, body: TemplateSpec):
    """Create or update a template by name (instance operators only); installed servers follow."""
    c = caller(request).require("admin")
    return Status(201, _template_out(do_save_template(body.model_dump(), operator=c.operator), c.team_id))


@router.delete("/templates/{template_id}", response={204: None})
def delete_template(request: HttpRequest, template_id: int, force: bool = False):
    """Remove a template (instance operators only); `force` also removes the servers installed from it."""
    c = caller(request).require("admin")
    do_delete_template(get_object_or_404(ServerTemplate, pk=template_id), operator=c.operator, force=force)
    return Status(204, None)


@router.post("/templates/{template_id}/install", response={201: ServerOut})
def install_template(request: HttpRequest, template_id: int, body: InstallIn):
    """Add a server to the caller's team from the catalogue, with its own name, parameters and secrets."""
    c = caller(request).require("admin", "builder")
    template = get_object_or_404(ServerTemplate, pk=template_id)
    return Status(201, _shown(do_install_template(c.team_id, template, body.name, dict(body.parameters), body.description), c))


@router.get("/servers/export", response={200: None}, openapi_extra={"responses": {200: {"description": "The config file", "content": {
    "application/yaml": {"schema": {}}, "application/json": {"schema": {"type": "object"}}}}}})
def export(request: HttpRequest, style: str = Query("yaml", pattern="^(yaml|claude)$")):
    c = caller(request).require("read")
    text = export_config(c.team_id, style, operator=c.operator)  # type: ignore[arg-type]
    return HttpResponse(text, content_type="application/json" if style == "claude" else "application/yaml")


@router.get("/servers/{server_id}", response=ServerOut)
def get_server(request: HttpRequest, server_id: int):
    c = caller(request).require("read")
    return _shown(get_object_or_404(ToolServer.objects.select_related("template"), pk=server_id, team_id=c.team_id), c)


@router.delete("/servers/{server_id}", response={204: None})
def delete_server(request: HttpRequest, server_id: int):
    do_delete_server(get_object_or_404(ToolServer, pk=server_id, team_id=caller(request).require("admin", "builder").team_id))
    return Status(204, None)


def _tool_out(tool: Tool) -> dict[str, Any]:
    return {"id": tool.pk, "name": tool.name, "qualified_name": tool.qualified_name, "server": tool.server.name,
            "description": tool.description, "input_schema": tool.input_schema, "enabled": tool.enabled, "status": tool.status}


@router.get("/tools", response=list[ToolOut])
def list_tools(request: HttpRequest, server: int | None = None):
    return [_tool_out(t) for t in queries.tools(caller(request).require("read").team_id, server)]


@router.post("/tools/{tool_id}/enabled", response=ToolOut)
def set_tool_enabled(request: HttpRequest, tool_id: int, enabled: bool):
    tool = get_object_or_404(Tool.objects.select_related("server"), pk=tool_id,
                             server__team_id=caller(request).require("admin", "builder").team_id)
    return _tool_out(do_set_tool_enabled(tool, enabled))


@router.post("/tools/{tool_id}/approve", response=ToolOut)
def approve_tool(request: HttpRequest, tool_id: int):
    """Accept a held tool's changed definition."""
    tool = get_object_or_404(Tool.objects.select_related("server"), pk=tool_id,
                             server__team_id=caller(request).require("admin", "builder").team_id)
    return _tool_out(do_approve_tool_definition(tool))


def _grant_out(g: Grant) -> dict[str, Any]:
    return {"id": g.pk, "principal_kind": g.principal_kind, "agent_name": g.agent_name, "api_key": g.api_key_id,
            "server": g.server_id, "tool": g.tool_id, "require_approval": g.require_approval,
            "calls_per_minute": g.calls_per_minute, "network_access": g.network_access}


@router.get("/grants", response=list[GrantOut])
def list_grants(request: HttpRequest, agent: str | None = None):
    return [_grant_out(g) for g in queries.grants(caller(request).require("read").team_id, agent=agent)]


@router.post("/grants", response={201: GrantOut})
def create_grant(request: HttpRequest, body: GrantIn):
    c = caller(request).require("admin", "builder")
    server = get_object_or_404(ToolServer, pk=body.server, team_id=c.team_id)
    tool = get_object_or_404(Tool, pk=body.tool, server=server) if body.tool else None
    key = get_object_or_404(ApiKey, pk=body.api_key, team_id=c.team_id) if body.api_key else None
    grant = do_grant(server, agent=body.agent, api_key=key, tool=tool, require_approval=body.require_approval,
                     calls_per_minute=body.calls_per_minute, network_access=body.network_access, operator=c.operator)
    return Status(201, _grant_out(grant))


@router.delete("/grants/{grant_id}", response={204: None})
def revoke_grant(request: HttpRequest, grant_id: int):
    do_revoke_grant(get_object_or_404(Grant, pk=grant_id, team_id=caller(request).require("admin", "builder").team_id))
    return Status(204, None)


def _key_out(key: ApiKey, token: str | None = None) -> dict[str, Any]:
    return {"id": key.pk, "name": key.name, "prefix": key.prefix, "scopes": key.scopes, "service_account": key.service_account,
            "created_at": key.created_at, "last_used_at": key.last_used_at, "revoked_at": key.revoked_at, "token": token}


@router.get("/api-keys", response=list[ApiKeyOut])
def list_keys(request: HttpRequest):
    return [_key_out(k) for k in ApiKey.objects.filter(team_id=caller(request).require("admin", "owner").team_id)]


@router.post("/api-keys", response={201: ApiKeyOut})
def create_key(request: HttpRequest, body: ApiKeyIn):
    """The token is in this response only; afterwards only its prefix is shown."""
    c = caller(request).require("admin", "owner")
    if not body.service_account and c.user_id is None:
        raise GatewayError("a service account key cannot create a user key", "service_account")
    user = None if body.service_account else get_user_model().objects.get(pk=c.user_id)
    key, token = do_create_api_key(c.team_id, body.name, user, scopes=list(body.scopes), service_account=body.service_account)
    return Status(201, _key_out(key, token))


@router.post("/api-keys/{key_id}/revoke", response=ApiKeyOut)
def revoke_key(request: HttpRequest, key_id: int):
    key = get_object_or_404(ApiKey, pk=key_id, team_id=caller(request).require("admin", "owner").team_id)
    return _key_out(do_revoke_api_key(key))


@router.get("/audit", response=list[AuditOut])
def audit(request: HttpRequest, run: int | None = None, agent: str | None = None, api_key: int | None = None,
          tool: str | None = None, status: str | None = None, before: int | None = None,
          limit: int = Query(50, ge=1, le=500)):
    where = queries.AuditFilter(run_id=run, agent=agent, api_key_id=api_key, tool=tool, status=status, before_id=before)
    return queries.audit_log(caller(request).require("read").team_id, where, limit)


# --- approvals of /mcp calls -----------------------------------------------------------------

def _approval_out(row: ToolApproval) -> dict[str, Any]:
    pending = row.status == ToolApproval.Status.PENDING
    return {"id": row.pk, "tool": row.tool_name, "arguments": row.arguments, "status": row.status,
            "principal_kind": row.principal_kind, "agent_name": row.agent_name, "api_key": row.api_key_id,
            "call_id": row.call_id, "note": row.note, "decided_by": row.decided_by_id,
            "decided_by_api_key": row.decided_by_api_key_id, "created_at": row.created_at, "decided_at": row.decided_at,
            "expires_at": row.created_at + timedelta(seconds=settings.GATEWAY_APPROVAL_WAIT_S) if pending else None}


@router.get("/approvals", response=list[ApprovalOut], tags=["reviews"])
def list_approvals(request: HttpRequest, status: str = "pending", limit: int = Query(100, ge=1, le=500)):
    """Calls API clients made over /mcp that wait for a person (grants with `require_approval`);
    a run's approvals are items of `GET /reviews`."""
    if status not in ToolApproval.Status.values:
        raise GatewayError(f"unknown status {status[:40]!r}; one of {', '.join(ToolApproval.Status.values)}", "status")
    return [_approval_out(a) for a in queries.call_approvals(caller(request).require("read").team_id, status, limit)]


@router.post("/approvals/{approval_id}/decide", response=ApprovalOut, tags=["reviews"])
def decide_approval(request: HttpRequest, approval_id: int, body: ApprovalDecisionIn):
    """approve (the waiting call is made, once) or reject (refused with `note`)."""
    c = caller(request).require("run", "reviewer")
    user = get_user_model().objects.filter(pk=c.user_id).first() if c.user_id is not None else None
    return _approval_out(do_decide_call_approval(c.team_id, approval_id, body.action == "approve", user, body.note,
                                                 api_key_id=c.api_key_id))

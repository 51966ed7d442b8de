"""Try a tool: a form generated from the tool's input schema, called through the gateway's
dispatch path as the signed-in user (or as one of the team's agents), audited like any call.

Strings, numbers, integers, booleans and enums get their own inputs; arrays and objects
(and anything else) are JSON fields. The result is shown escaped.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import async_to_sync
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import path

from dashboard import queries
from dashboard.access import team_view
from mcpgateway.dispatch import Gateway
from mcpgateway.models import Tool, ToolStatus
from mcpgateway.types import ApprovalRequired, Principal, ToolDenied, ToolInvocation

SIMPLE = {"string", "number", "integer", "boolean"}


@dataclass(slots=True)
class SchemaField:
    """One top-level property of a tool's input schema, as a form input."""

    name: str
    kind: str  # string, number, integer, boolean, enum, json
    required: bool
    description: str = ""
    choices: list[str] = field(default_factory=list)
    value: str = ""
    error: str = ""


def _type(prop: dict[str, Any]) -> str:
    kind = prop.get("type")
    if isinstance(kind, list):  # ["string", "null"]: the first that is not null
        kind = next((k for k in kind if k != "null"), None)
    if "enum" in prop and all(isinstance(v, str | int | float) for v in prop["enum"]):
        return "enum"
    return kind if kind in SIMPLE else "json"


def schema_fields(schema: dict[str, Any], values: dict[str, str] | None = None) -> list[SchemaField]:
    """The form's inputs for a JSON Schema object (its top-level properties, required first)."""
    props = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    found = []
    for name, prop in props.items():
        prop = prop if isinstance(prop, dict) else {}
        kind = _type(prop)
        default = prop.get("default")
        value = (values or {}).get(name)
        if value is None and default is not None:
            value = json.dumps(default) if kind == "json" else str(default).lower() if kind == "boolean" else str(default)
        found.append(SchemaField(name=name, kind=kind, required=name in required,
                                 description=str(prop.get("description") or prop.get("title") or ""),
                                 choices=[str(v) for v in prop.get("enum", [])] if kind == "enum" else [],
                                 value=value or ""))
    return sorted(found, key=lambda f: not f.required)


def parse_arguments(schema: dict[str, Any], fields: list[SchemaField]) -> dict[str, Any] | None:
    """The call's arguments from the filled fields, or None after setting each bad field's error."""
    props = schema.get("properties") or {}
    arguments: dict[str, Any] = {}
    for f in fields:
        raw = f.value.strip() if f.kind != "string" else f.value
        if f.kind == "boolean":
            if raw in ("true", "false"):
                arguments[f.name] = raw == "true"
            elif f.required:
                f.error = "choose true or false"
            continue
        if raw == "":
            if f.required:
                f.error = "required"
            continue
        try:
            if f.kind == "integer":
                arguments[f.name] = int(raw)
            elif f.kind == "number":
                arguments[f.name] = float(raw)
            elif f.kind == "enum":
                options = props.get(f.name, {}).get("enum", [])
                match = [v for v in options if str(v) == raw]
                if not match:
                    raise ValueError(f"choose one of {', '.join(map(str, options))}")
                arguments[f.name] = match[0]
            elif f.kind == "json":
                arguments[f.name] = json.loads(raw)
            else:
                arguments[f.name] = raw
        except json.JSONDecodeError as exc:
            f.error = f"not valid JSON: {exc.msg}"
        except ValueError as exc:
            f.error = str(exc) if f.kind == "enum" else f"not a valid {f.kind}"
    return None if any(f.error for f in fields) else arguments


def call_as(team_id: int, user_id: int, agent: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Call through the dispatch path (grant, rate limit, approval, audit) and say what happened."""
    principal = Principal(team_id=team_id, agent=agent or None, user_id=user_id)
    invocation = ToolInvocation(principal, name, arguments, call_id=f"try-{uuid.uuid4().hex[:12]}")
    try:
        result = async_to_sync(Gateway(team_id).call_tool)(invocation)
    except ToolDenied as exc:
        return {"denied": str(exc)}
    except ApprovalRequired:
        return {"denied": "this grant asks for approval; a reviewer must approve the call first"}
    structured = (result.data or {}).get("structured")
    return {"content": result.content, "is_error": result.is_error,
            "structured": json.dumps(structured, indent=2, ensure_ascii=False) if structured is not None else ""}


@team_view("tool.try")
def try_tool(request: HttpRequest, pk: int) -> HttpResponse:
    tool = get_object_or_404(Tool.objects.select_related("server"), pk=pk, server__team_id=request.team.pk)
    schema = tool.input_schema or {}
    agents = [a.name for a in queries.agents(request.team.pk)]
    agent = request.POST.get("as_agent", "") if request.method == "POST" else ""
    outcome, status = None, 200
    values = {k: v for k, v in request.POST.items()} if request.method == "POST" else None
    fields = schema_fields(schema, values)
    if request.method == "POST":
        arguments = parse_arguments(schema, fields)
        if agent and agent not in agents:
            outcome, status = {"denied": "choose an agent of this team"}, 400
        elif arguments is None:
            status = 400
        elif tool.status != ToolStatus.ACTIVE or not tool.enabled or not tool.server.enabled:
            outcome, status = {"denied": "this tool is disabled, held for approval or no longer offered"}, 409
        else:
            outcome = call_as(request.team.pk, request.user.pk, agent, tool.qualified_name, arguments)
            outcome["arguments"] = json.dumps(arguments, ensure_ascii=False)
    return render(request, "dashboard/tools/try.html", {
        "section": "servers", "tool": tool, "fields": fields, "agents": agents, "as_agent": agent,
        "outcome": outcome, "schema": json.dumps(schema, indent=2, ensure_ascii=False),
    }, status=status)


urlpatterns = [
    path("<int:pk>/", try_tool, name="tools-try"),
]

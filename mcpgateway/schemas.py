"""REST API schemas for the gateway: servers, tools, grants, API keys, audit."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from ninja import Schema
from pydantic import Field


class ServerIn(Schema):
    name: str = Field(pattern=r"^[a-zA-Z0-9-]{1,32}$")
    description: str = Field("", max_length=300)
    transport: Literal["stdio", "http", "sse"] = "stdio"
    command: str = Field("", max_length=500)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str = Field("", max_length=500)
    url: str = Field("", max_length=500)
    headers: dict[str, str] = Field(default_factory=dict)
    enabled: bool = True
    call_timeout_s: float = Field(60, gt=0, le=3600)
    caller_context: bool = Field(False, description="Send each call's session and grant options in _meta "
                                                    "(the built-in sandbox needs it; leave off for other servers).")
    secrets: dict[str, str] = Field(default_factory=dict, description="Values for ${NAME} references; stored encrypted.")
    env_allow: list[str] | None = Field(None, description="Instance operators only: process environment variables "
                                                          "the server may reference (default: those it references).")


class ServerOut(Schema):
    id: int
    name: str
    description: str
    transport: str
    command: str
    args: list[str]
    env: dict[str, str]
    cwd: str
    url: str
    headers: dict[str, str]
    enabled: bool
    call_timeout_s: float
    caller_context: bool
    template_id: int | None = Field(None, description="The catalogue template it was installed from.")
    parameters: dict[str, str] = Field(default_factory=dict, description="The template's non-secret parameter values.")
    env_allow: list[str] = Field(default_factory=list)
    health: str
    health_error: str
    restarts: int


class TemplateOut(Schema):
    id: int
    name: str
    description: str
    command: str
    args: list[str]
    env_names: list[str] = Field(description="The variables the server's process gets (values not shown).")
    cwd: str
    parameters: list[dict[str, Any]]
    env_allow: list[str]
    caller_context: bool
    call_timeout_s: float
    installed: int = Field(description="Servers installed from it (in the caller's team).")


class InstallIn(Schema):
    name: str = Field(pattern=r"^[a-zA-Z0-9-]{1,32}$")
    description: str = Field("", max_length=300)
    parameters: dict[str, str | int] = Field(default_factory=dict, description="Values for the template's parameters; "
                                                                                "secret ones are stored encrypted.")


class ParametersIn(Schema):
    parameters: dict[str, str | int] = Field(default_factory=dict, description="Changed values; an empty or missing "
                                                                                "secret keeps the stored one.")
    description: str | None = Field(None, max_length=300)


class ToolOut(Schema):
    id: int
    name: str
    qualified_name: str
    server: str
    description: str
    input_schema: dict[str, Any]
    enabled: bool
    status: str


class ConfigIn(Schema):
    text: str = Field(min_length=1, max_length=200_000)
    secrets: dict[str, str] = Field(default_factory=dict)


class GrantIn(Schema):
    server: int
    tool: int | None = None
    agent: str = Field("", max_length=64)
    api_key: int | None = None
    require_approval: bool = False
    calls_per_minute: int | None = Field(None, ge=1, le=1_000_000)
    network_access: bool = Field(False, description="Sandbox tools: the container may use the network.")


class GrantOut(Schema):
    id: int
    principal_kind: str
    agent_name: str
    api_key: int | None
    server: int
    tool: int | None
    require_approval: bool
    calls_per_minute: int | None
    network_access: bool


class ApiKeyIn(Schema):
    name: str = Field(min_length=1, max_length=100)
    scopes: list[Literal["read", "run", "admin"]] = Field(default_factory=lambda: ["read", "run"])
    service_account: bool = False


class ApiKeyOut(Schema):
    id: int
    name: str
    prefix: str
    scopes: list[str]
    service_account: bool
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    token: str | None = Field(None, description="Shown once, when the key is created.")


class AuditOut(Schema):
    id: int
    created_at: datetime
    principal_kind: str
    agent_name: str
    api_key_id: int | None
    run_id: int | None
    step_key: str
    server_name: str
    tool_name: str
    arguments: dict[str, Any]
    result: Any = None
    status: str
    error: str
    latency_ms: float
    grant_id: int | None


class ApprovalOut(Schema):
    """A call an API client made over /mcp, waiting for (or given) a person's verdict."""

    id: int
    tool: str
    arguments: dict[str, Any] = Field(description="As stored: the team's secrets redacted.")
    status: str
    principal_kind: str
    agent_name: str
    api_key: int | None = Field(description="The key whose call it is.")
    call_id: str
    note: str
    decided_by: int | None
    decided_by_api_key: int | None
    created_at: datetime
    decided_at: datetime | None
    expires_at: datetime | None = Field(description="Pending: when its caller stops waiting (then it is rejected).")


class ApprovalDecisionIn(Schema):
    action: Literal["approve", "reject"]
    note: str = Field("", max_length=2000, description="Why; a rejection's note is what the caller is told.")

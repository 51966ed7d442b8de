"""The gateway's data: tool servers and their secrets, the tool catalogue, API keys,
grants, approvals, rate-limit counters and the audit log.

The gateway knows callers only as principals (team id, agent name, user, API key); it
references no orchestrator model.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

from mcpgateway import crypto

SERVER_NAME = RegexValidator(r"^[a-zA-Z0-9-]{1,32}\Z", "letters, digits and dashes, at most 32 (no underscores: `__` separates server and tool)")


class Transport(models.TextChoices):
    STDIO = "stdio", "stdio (subprocess)"
    HTTP = "http", "Streamable HTTP"
    SSE = "sse", "SSE"


class Health(models.TextChoices):
    UNKNOWN = "unknown", "Unknown"
    STARTING = "starting", "Starting"
    UP = "up", "Up"
    DOWN = "down", "Down"
    STOPPED = "stopped", "Stopped"


class ServerTemplate(models.Model):
    """A stdio tool server an instance operator offers to every team (the server catalogue).

    `args`, `env` values and `cwd` may hold `{{param}}` placeholders for the declared
    `parameters` (the only things a team fills in); a `secret` parameter may appear only in
    env values and is stored encrypted per installed server. `env_allow` names the process
    environment variables the template's env may reference as `${NAME}`.
    """

    name = models.CharField(max_length=32, unique=True, validators=[SERVER_NAME])
    description = models.CharField(max_length=300, blank=True)
    command = models.CharField(max_length=500)
    args = models.JSONField(default=list, blank=True)
    env = models.JSONField(default=dict, blank=True)
    cwd = models.CharField(max_length=500, blank=True)
    parameters = models.JSONField(default=list, blank=True)
    env_allow = models.JSONField(default=list, blank=True)
    caller_context = models.BooleanField(default=False)
    call_timeout_s = models.FloatField(default=60)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        permissions = [("operate_instance", "Operate the instance: stdio servers, templates, sandbox, process env")]

    def __str__(self) -> str:
        return self.name


class ToolServer(models.Model):
    team_id = models.BigIntegerField(db_index=True)
    name = models.CharField(max_length=32, validators=[SERVER_NAME])
    description = models.CharField(max_length=300, blank=True)
    transport = models.CharField(max_length=8, choices=Transport.choices, default=Transport.STDIO)
    command = models.CharField(max_length=500, blank=True)
    args = models.JSONField(default=list, blank=True)
    # Values may contain ${NAME} references, resolved from this server's secrets, or from the process
    # environment only for names on the allow-list of its template or of an operator (`env_allow`).
    env = models.JSONField(default=dict, blank=True)
    cwd = models.CharField(max_length=500, blank=True)
    url = models.URLField(max_length=500, blank=True)
    headers = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    call_timeout_s = models.FloatField(default=60)
    caller_context = models.BooleanField(
        default=False, help_text="Send each call's session and grant options in the request's _meta "
                                 "(for the built-in sandbox; leave off for third-party servers).")
    template = models.ForeignKey(ServerTemplate, null=True, blank=True, on_delete=models.PROTECT, related_name="instances",
                                 help_text="Installed from this catalogue template: only its parameters may change.")
    parameters = models.JSONField(default=dict, blank=True, help_text="The template's non-secret parameter values.")
    env_allow = models.JSONField(default=list, blank=True,
                                 help_text="Process environment variables this server may reference (set by an operator).")
    health = models.CharField(max_length=10, choices=Health.choices, default=Health.UNKNOWN)
    health_error = models.TextField(blank=True)
    health_changed_at = models.DateTimeField(null=True, blank=True)
    restarts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team_id", "name"], name="uniq_server_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ServerSecret(models.Model):
    """A secret a server's env or headers reference as ${NAME}; encrypted at rest."""

    server = models.ForeignKey(ToolServer, on_delete=models.CASCADE, related_name="secrets")
    name = models.CharField(max_length=100)
    value_encrypted = models.TextField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["server", "name"], name="uniq_server_secret")]

    def __str__(self) -> str:
        return f"{self.server}:{self.name}"

    @property
    def value(self) -> str:
        return crypto.decrypt(self.value_encrypted)

    @value.setter
    def value(self, plain: str) -> None:
        self.value_encrypted = crypto.encrypt(plain)


def definition_hash(definition: dict[str, Any]) -> str:
    """A digest of what a model sees of a tool; any change to it holds the tool for re-approval."""
    text = json.dumps(definition, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


class ToolStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    HELD = "held", "Held: definition changed since approval"
    REMOVED = "removed", "No longer offered by the server"


class Tool(models.Model):
    """A tool an upstream server offers, as last discovered, with its approved definition."""

    server = models.ForeignKey(ToolServer, on_delete=models.CASCADE, related_name="tools")
    name = models.CharField(max_length=128)
    description = models.TextField(blank=True)
    input_schema = models.JSONField(default=dict)
    output_schema = models.JSONField(null=True, blank=True)
    annotations = models.JSONField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    status = models.CharField(max_length=10, choices=ToolStatus.choices, default=ToolStatus.ACTIVE)
    # The definition an admin approved (first sight counts as approved); a change holds the tool.
    approved_hash = models.CharField(max_length=64, blank=True)
    approved_definition = models.JSONField(null=True, blank=True)
    current_hash = models.CharField(max_length=64, blank=True)
    calls_per_minute = models.PositiveIntegerField(null=True, blank=True, help_text="For all callers together.")
    # Whether a call that a crash interrupted may simply be made again on resume. Empty: from
    # the server's annotations (`readOnlyHint` or `idempotentHint`); set: the operator's word.
    retry_safe = models.BooleanField(null=True, blank=True, help_text=(
        "Retry a call a crash interrupted without asking. Empty: only when the server marks the tool "
        "read-only or idempotent."))
    first_seen = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["server", "name"], name="uniq_tool_name")]
        ordering = ["server__name", "name"]

    def __str__(self) -> str:
        return self.qualified_name

    @property
    def qualified_name(self) -> str:
        return qualified_name(self.server.name, self.name)

    def qualified_name_for(self, server_name: str) -> str:
        return qualified_name(server_name, self.name)

    @property
    def safe_to_retry(self) -> bool:
        """May a call interrupted by a crash be made again without a human deciding?"""
        if self.retry_safe is not None:
            return self.retry_safe
        hints = self.annotations or {}
        return hints.get("readOnlyHint") is True or hints.get("idempotentHint") is True

    def definition(self) -> dict[str, Any]:
        """What an approval covers: what a model sees, and the annotations (hints such as
        `destructiveHint` that decide how calls are treated)."""
        return {"description": self.description, "input_schema": self.input_schema, "output_schema": self.output_schema,
                "annotations": self.annotations}


def qualified_name(server: str, tool: str) -> str:
    """`<server>__<tool>`, cut to 64 characters with a stable hash suffix when longer."""
    import re

    name = re.sub(r"[^a-zA-Z0-9_-]", "_", f"{server}__{tool}")
    if len(name) <= 64:
        return name
    return f"{name[:55]}_{hashlib.sha256(name.encode()).hexdigest()[:8]}"


class ApiKey(models.Model):
    """A credential for the REST API and the MCP endpoint, scoped to one team. Shown once, stored hashed."""

    class Scope(models.TextChoices):
        READ = "read", "Read"
        RUN = "run", "Run"
        ADMIN = "admin", "Admin"

    team_id = models.BigIntegerField(db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    service_account = models.BooleanField(default=False)
    prefix = models.CharField(max_length=12, db_index=True)
    hashed = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def hash_token(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    @staticmethod
    def new_token() -> str:
        return "adk_" + secrets.token_urlsafe(32)


class PrincipalKind(models.TextChoices):
    TEAM = "team", "Everyone in the team"
    AGENT = "agent", "Agent"
    API_KEY = "api_key", "API key"


class Grant(models.Model):
    """Allows a principal a whole server or one tool. Without a grant, nothing is allowed."""

    team_id = models.BigIntegerField(db_index=True)
    principal_kind = models.CharField(max_length=8, choices=PrincipalKind.choices)
    agent_name = models.CharField(max_length=64, blank=True)
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.CASCADE, related_name="grants")
    server = models.ForeignKey(ToolServer, on_delete=models.CASCADE, related_name="grants")
    tool = models.ForeignKey(Tool, null=True, blank=True, on_delete=models.CASCADE, related_name="grants",
                             help_text="Empty: every tool of the server.")
    require_approval = models.BooleanField(default=False, help_text="Each call waits for a human in the review queue.")
    calls_per_minute = models.PositiveIntegerField(null=True, blank=True, help_text="For this principal, per tool.")
    network_access = models.BooleanField(default=False, help_text="Sandbox tools: the container may use the network.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["team_id", "principal_kind", "agent_name"]
        indexes = [models.Index(fields=["team_id", "principal_kind"], name="grant_team_kind")]

    def __str__(self) -> str:
        who = {"team": "team", "agent": f"agent {self.agent_name}", "api_key": f"key {self.api_key_id}"}[self.principal_kind]
        what = self.tool.qualified_name if self.tool_id else f"{self.server.name}__*"
        return f"{who} → {what}"


class CallStatus(models.TextChoices):
    OK = "ok", "OK"
    ERROR = "error", "Tool error"
    DENIED = "denied", "Denied"
    RATE_LIMITED = "rate_limited", "Rate limited"
    TIMEOUT = "timeout", "Timed out"
    UNAVAILABLE = "unavailable", "Server unavailable"
    APPROVAL_PENDING = "approval_pending", "Waiting for approval"
    APPROVAL_REJECTED = "approval_rejected", "Approval rejected"
    # Written before the upstream call and updated in place when it ends; a crash leaves it
    # `started`, which the run's resume turns into `interrupted` (the call may have run).
    STARTED = "started", "Started"
    INTERRUPTED = "interrupted", "Interrupted: may have run"


class AuditEntry(models.Model):
    """One row per tool call through the gateway, allowed or not. Secrets are redacted."""

    team_id = models.BigIntegerField()
    principal_kind = models.CharField(max_length=8, choices=PrincipalKind.choices)
    agent_name = models.CharField(max_length=64, blank=True)
    api_key_id = models.BigIntegerField(null=True, blank=True)
    user_id = models.BigIntegerField(null=True, blank=True)
    run_id = models.BigIntegerField(null=True, blank=True)
    step_key = models.CharField(max_length=200, blank=True)
    call_id = models.CharField(max_length=100, blank=True)
    # Sent upstream in `_meta` (`mcpgateway.idempotency`); the same for a retry of the call.
    idempotency_key = models.CharField(max_length=300, blank=True)
    # One dispatch: the `started` row is updated in place through it when the call ends.
    dispatch_id = models.CharField(max_length=32, blank=True, db_index=True)
    server_name = models.CharField(max_length=32, blank=True)
    tool_name = models.CharField(max_length=64)
    arguments = models.JSONField(default=dict)
    result = models.JSONField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=CallStatus.choices)
    error = models.TextField(blank=True)
    latency_ms = models.FloatField(default=0)
    grant = models.ForeignKey(Grant, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit")
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["team_id", "-created_at"], name="audit_team_created"),
            models.Index(fields=["run_id", "created_at"], name="audit_run"),
            models.Index(fields=["team_id", "tool_name", "-created_at"], name="audit_team_tool"),
        ]

    def __str__(self) -> str:
        return f"{self.tool_name} {self.status}"


class ToolApproval(models.Model):
    """A tool call waiting for a human decision (grants with `require_approval`)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        USED = "used", "Approved and used"

    team_id = models.BigIntegerField(db_index=True)
    principal_kind = models.CharField(max_length=8, choices=PrincipalKind.choices)
    agent_name = models.CharField(max_length=64, blank=True)
    api_key_id = models.BigIntegerField(null=True, blank=True)
    run_id = models.BigIntegerField(null=True, blank=True)
    step_key = models.CharField(max_length=200, blank=True)
    call_id = models.CharField(max_length=100, blank=True)
    tool_name = models.CharField(max_length=64)
    arguments = models.JSONField(default=dict)
    request_hash = models.CharField(max_length=64, db_index=True)
    # The call's attempt and place in it (runs' calls): an approval is for that call only. Empty
    # on calls from /mcp and on rows written before it was kept.
    idempotency_key = models.CharField(max_length=300, blank=True, default="")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    note = models.TextField(blank=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    # The API key a service account decided with (no user): a decision names its decider.
    decided_by_api_key_id = models.BigIntegerField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.tool_name} ({self.status})"


class RateCounter(models.Model):
    """A fixed-window call counter, for rate limits when no Redis is configured."""

    key = models.CharField(max_length=200)
    window = models.BigIntegerField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["key", "window"], name="uniq_rate_window")]

    def __str__(self) -> str:
        return f"{self.key}@{self.window}: {self.count}"

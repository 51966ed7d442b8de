"""Import and export tool servers as `mcp_config.yaml` or Claude-style `mcpServers` JSON.

    servers:
      filesystem: {command: npx, args: [-y, "@modelcontextprotocol/server-filesystem", /workspace]}
      github: {command: npx, args: [...], env: {GITHUB_TOKEN: "${GITHUB_TOKEN}"}}
      database: {url: "https://db-mcp.internal/mcp", transport: http}

    {"mcpServers": {"github": {"command": "npx", "args": [...], "env": {...}},
                    "remote": {"type": "http", "url": "https://...", "headers": {...}}}}

An import is all or nothing: every entry is validated and every `${VAR}` must resolve
(from secrets given with the import or the server's stored secrets; from the process
environment only for an instance operator's import) before anything is written. A stdio
entry, which runs a command on the host, is refused (403, naming the entry's field) unless
the importer is an instance operator. Exports carry references, never secret values.
"""

from __future__ import annotations

import json
import os
from typing import Any, Literal

import yaml
from django.db import transaction
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mcpgateway.actions.servers import REF, check_server, check_server_authority, do_save_server
from mcpgateway.documents import DuplicateKey, load_yaml_unique, loads_json_unique
from mcpgateway.errors import ConfigError, GatewayError, NotOperator
from mcpgateway.models import ServerSecret, ToolServer

DEFAULT_CALL_TIMEOUT_S = ToolServer._meta.get_field("call_timeout_s").default
TRANSPORT_ALIASES = {"http": "http", "streamable-http": "http", "streamable_http": "http", "streamableHttp": "http",
                     "sse": "sse", "stdio": "stdio"}


class ServerEntry(BaseModel):
    """One server in either file format."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    # Within what the database holds (a longer value or a NUL was a 500 on PostgreSQL, or a 422
    # naming no field): each refused here naming its path.
    command: str | None = Field(None, max_length=500)
    args: list[str] = Field(default_factory=list, max_length=200)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = Field(None, max_length=500)
    url: str | None = Field(None, max_length=500)
    transport: Literal["stdio", "http", "sse"] | None = None
    type: str | None = None  # Claude Desktop / Code spelling of the transport
    headers: dict[str, str] = Field(default_factory=dict)
    description: str = Field("", max_length=300)
    enabled: bool = True
    disabled: bool | None = None  # Claude spelling
    timeout: float | None = Field(None, gt=0, le=3600)
    caller_context: bool = False  # Agentdeck: send the call's session and grant options in _meta
    # Accepted from Claude files, not used: the gateway's grants decide what is allowed.
    autoApprove: list[str] | None = None
    alwaysAllow: list[str] | None = None

    @field_validator("command", "cwd", "url", "description", "args", "env", "headers")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        texts = [value] if isinstance(value, str) else list(value) if isinstance(value, list) else (
            [*value.keys(), *value.values()] if isinstance(value, dict) else [])
        if any("\x00" in text for text in texts):
            raise ValueError("a NUL character cannot be stored")
        if isinstance(value, dict) and any(len(key) > 100 for key in value):
            raise ValueError("a name is at most 100 characters")
        if any(len(text) > 4000 for text in texts):
            raise ValueError("a value is at most 4000 characters")
        return value

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str | None) -> str | None:
        if value is not None and value not in TRANSPORT_ALIASES:
            raise ValueError(f"unknown type {value!r}; one of {', '.join(sorted(TRANSPORT_ALIASES))}")
        return value

    @model_validator(mode="after")
    def _command_or_url(self) -> ServerEntry:
        if bool(self.command) == bool(self.url):
            raise ValueError("give either `command` (stdio) or `url` (http/sse), not both or neither")
        return self

    def fields(self) -> dict[str, Any]:
        """The server's fields; a `description`, `caller_context` or `timeout` the entry leaves out is
        left out too, so re-importing a file updates a server without wiping what it does not say."""
        transport = self.transport or (TRANSPORT_ALIASES[self.type] if self.type else None)
        transport = transport or ("stdio" if self.command else "http")
        result: dict[str, Any] = {"transport": transport, "enabled": self.enabled and not self.disabled}
        for name in ("description", "caller_context"):
            if name in self.model_fields_set:
                result[name] = getattr(self, name)
        if self.timeout:
            result["call_timeout_s"] = self.timeout
        if transport == "stdio":
            result.update(command=self.command, args=self.args, env=self.env, cwd=self.cwd or "", url="", headers={})
        else:
            result.update(url=self.url, headers=self.headers, command="", args=[], env={}, cwd="")
        return result


def parse_config(text: str) -> tuple[str, dict[str, ServerEntry]]:
    """Parse either format into (top-level key, entries); raise ConfigError naming each bad field."""
    try:
        try:
            data = loads_json_unique(text)
        except json.JSONDecodeError:
            try:
                data = load_yaml_unique(text)
            except yaml.YAMLError as exc:
                raise ConfigError([{"field": "", "message": f"neither valid JSON nor YAML: {exc}"}]) from None
    except DuplicateKey as exc:  # a server named twice kept only its last entry, silently
        raise ConfigError([{"field": str(exc.key), "message": str(exc)}]) from None
    if not isinstance(data, dict):
        raise ConfigError([{"field": "", "message": "expected an object with `servers` or `mcpServers`"}])
    key = "servers" if "servers" in data else "mcpServers" if "mcpServers" in data else None
    if key is None or not isinstance(data[key], dict):
        raise ConfigError([{"field": "", "message": "expected an object with `servers` or `mcpServers` mapping names to servers"}])
    errors: list[dict[str, str]] = []
    entries: dict[str, ServerEntry] = {}
    for name, raw in data[key].items():
        if not isinstance(name, str):
            # YAML reads `123:`, `true:` and `~:` as a number, a boolean and null: saved as "123"
            # or "True", the server's answer failed (a 500), and null a misleading 409.
            errors.append({"field": f"{key}.{_yaml_key(name)}",
                           "message": f"a server name must be text, and YAML reads this one as {_yaml_type(name)}: "
                                      "put it in quotes"})
            continue
        try:
            entries[name] = ServerEntry.model_validate(raw)
        except ValidationError as exc:
            for e in exc.errors(include_url=False):
                path = ".".join(str(p) for p in (key, name, *e["loc"]))
                errors.append({"field": path, "message": e["msg"].removeprefix("Value error, ")})
            continue
        try:
            check_server(name, {k: v for k, v in entries[name].fields().items()})
        except GatewayError as exc:
            errors.append({"field": f"{key}.{name}.{exc.field}" if exc.field else f"{key}.{name}", "message": exc.message})
    if errors:
        raise ConfigError(errors)
    return key, entries


def _yaml_key(name: object) -> str:
    return "~" if name is None else str(name).lower() if isinstance(name, bool) else str(name)


def _yaml_type(name: object) -> str:
    if name is None:
        return "null"
    if isinstance(name, bool):
        return "a boolean"
    if isinstance(name, int | float):
        return "a number"
    return f"a {type(name).__name__}"


def _reference_places(entry: ServerEntry) -> list[tuple[str, str]]:
    """(field under the entry, text) of every value whose `${NAME}` references the server resolves:
    what `check_references` checks at save, the URL and working directory included."""
    places = [(f"{section}.{k}", v) for section, values in (("env", entry.env), ("headers", entry.headers))
              for k, v in values.items()]
    places += [(f"args.{i}", a) for i, a in enumerate(entry.args)]
    places += [(name, value) for name, value in (("command", entry.command), ("cwd", entry.cwd), ("url", entry.url))
               if value]
    return places


def _missing_refs(team_id: int, name: str, entry: ServerEntry, secrets: dict[str, str], key: str,
                  operator: bool) -> list[dict[str, str]]:
    stored = set(ServerSecret.objects.filter(server__team_id=team_id, server__name=name).values_list("name", flat=True))
    errors = []
    for where, value in _reference_places(entry):
        for ref in REF.findall(value):
            if ref in secrets or ref in stored or (operator and ref in os.environ):
                continue
            hint = ("give it as a secret with the import or set the environment variable " + ref if operator else
                    "give it as a secret with the import (process environment variables are for instance operators only)")
            errors.append({"field": f"{key}.{name}.{where}", "message": f"${{{ref}}} is not set: {hint}"})
    return errors


def _check_authority(team_id: int, key: str, entries: dict[str, ServerEntry], operator: bool) -> None:
    current = {s.name: s for s in ToolServer.objects.filter(team_id=team_id, name__in=list(entries)).select_related("template")}
    for name, entry in entries.items():
        try:
            check_server_authority(entry.fields(), operator=operator, current=current.get(name), env_allow=None)
        except NotOperator as exc:
            raise NotOperator(exc.message, f"{key}.{name}.{exc.field}") from None
        except GatewayError as exc:
            raise ConfigError([{"field": f"{key}.{name}.{exc.field}", "message": exc.message}]) from None


@transaction.atomic
def do_import_config(team_id: int, text: str, secrets: dict[str, str] | None = None, *,
                     operator: bool) -> list[ToolServer]:
    """Create or update every server in the file. `secrets` values are stored encrypted.
    `operator`: the importer is an instance operator (`mcpgateway.authority`)."""
    secrets = secrets or {}
    key, entries = parse_config(text)
    _check_authority(team_id, key, entries, operator)
    errors = [e for name, entry in entries.items() for e in _missing_refs(team_id, name, entry, secrets, key, operator)]
    if errors:
        raise ConfigError(errors)
    servers = []
    for name, entry in entries.items():
        refs = {r for _, v in _reference_places(entry) for r in REF.findall(v)}
        try:
            servers.append(do_save_server(team_id, name, secrets={r: secrets[r] for r in refs if r in secrets},
                                          operator=operator, **entry.fields()))
        except GatewayError as exc:
            if isinstance(exc, ConfigError):
                raise
            exc.field = f"{key}.{name}.{exc.field}" if exc.field else f"{key}.{name}"
            raise
    return servers


def export_config(team_id: int, style: Literal["yaml", "claude"] = "yaml", *, operator: bool = True) -> str:
    """The team's servers in either format, with `${NAME}` references instead of secrets.

    Every setting the import reads is written (in both styles; Claude clients ignore the keys
    they do not know), so export -> import -> export gives the same file."""
    servers: dict[str, dict[str, Any]] = {}
    from mcpgateway.actions.templates import shown_env

    for server in ToolServer.objects.filter(team_id=team_id).select_related("template").order_by("name"):
        entry: dict[str, Any]
        if server.transport == "stdio":
            entry = {"command": server.command}
            if server.args:
                entry["args"] = list(server.args)
            if server.env:
                entry["env"] = shown_env(server, operator)  # (a team member: not the operator's text)
            if server.cwd:
                entry["cwd"] = server.cwd
        else:
            entry = {"url": server.url}
            entry["type" if style == "claude" else "transport"] = server.transport
            if server.headers:
                entry["headers"] = dict(server.headers)
        if not server.enabled:
            entry["disabled" if style == "claude" else "enabled"] = True if style == "claude" else False
        if server.description:
            entry["description"] = server.description
        if server.caller_context:
            entry["caller_context"] = True
        if server.call_timeout_s != DEFAULT_CALL_TIMEOUT_S:
            entry["timeout"] = server.call_timeout_s
        servers[server.name] = entry
    if style == "claude":
        return json.dumps({"mcpServers": servers}, indent=2)
    return yaml.safe_dump({"servers": servers}, sort_keys=False)

"""Tool servers and their secrets.

Env and header values are stored as `${NAME}` references. A literal value given for one
is moved into the server's encrypted secret store under that name, so no secret is ever
kept in plain text; `resolve_config` expands references from the secret store first,
then the process environment.
"""

from __future__ import annotations

import os
import re
from typing import Any

from django.db import transaction

from mcpgateway.errors import GatewayError, MissingVariable
from mcpgateway.models import SERVER_NAME, ServerSecret, ToolServer, Transport
from mcpgateway.upstream.config import UpstreamConfig

REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
SERVER_FIELDS = {"description", "transport", "command", "args", "env", "cwd", "url", "headers", "enabled", "call_timeout_s",
                 "caller_context"}


def secret_name(key: str) -> str:
    """The secret a literal env/header value is stored under: its key, as an identifier."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", key).upper()
    return name if name and not name[0].isdigit() else f"_{name}"


def check_server(name: str, fields: dict[str, Any]) -> None:
    try:
        SERVER_NAME(name)
    except Exception:
        raise GatewayError(f"server name {name!r}: use letters, digits and dashes (at most 32)", "name") from None
    unknown = set(fields) - SERVER_FIELDS
    if unknown:
        raise GatewayError(f"unknown server fields: {', '.join(sorted(unknown))}", sorted(unknown)[0])
    transport = fields.get("transport", Transport.STDIO)
    if transport not in Transport.values:
        raise GatewayError(f"transport must be one of {', '.join(Transport.values)}", "transport")
    if transport == Transport.STDIO and not fields.get("command"):
        raise GatewayError("a stdio server needs a command", "command")
    if transport != Transport.STDIO and not str(fields.get("url", "")).startswith(("http://", "https://")):
        raise GatewayError("an http or sse server needs an http(s) url", "url")
    for key in ("env", "headers"):
        value = fields.get(key, {})
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise GatewayError(f"{key} must map names to strings", key)
    args = fields.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise GatewayError("args must be a list of strings", "args")


def _split_secrets(values: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(references to store, secrets to encrypt) for env or header values."""
    stored, secrets = {}, {}
    for key, value in values.items():
        if REF.search(value):
            stored[key] = value
        else:
            name = secret_name(key)
            stored[key] = "${" + name + "}"
            secrets[name] = value
    return stored, secrets


@transaction.atomic
def do_save_server(team_id: int, name: str, secrets: dict[str, str] | None = None, **fields: Any) -> ToolServer:
    """Create or update a server by name; literal env/header values become encrypted secrets."""
    check_server(name, fields)
    new_secrets = dict(secrets or {})
    for key in ("env", "headers"):
        if key in fields:
            fields[key], moved = _split_secrets(fields[key])
            new_secrets.update(moved)
    server, _ = ToolServer.objects.update_or_create(team_id=team_id, name=name, defaults=fields)
    for secret, value in new_secrets.items():
        do_set_secret(server, secret, value)
    transaction.on_commit(_servers_changed)
    return server


def do_set_secret(server: ToolServer, name: str, value: str) -> ServerSecret:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise GatewayError(f"secret name {name!r} must be an identifier", "name")
    secret = ServerSecret.objects.filter(server=server, name=name).first() or ServerSecret(server=server, name=name)
    secret.value = value
    secret.save()
    transaction.on_commit(_servers_changed)
    return secret


def do_delete_server(server: ToolServer) -> None:
    server.delete()
    transaction.on_commit(_servers_changed)


def _servers_changed() -> None:
    from mcpgateway.runtime import notify_servers_changed

    notify_servers_changed()


def expand(text: str, lookup: dict[str, str], where: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in lookup:
            return lookup[name]
        if name in os.environ:
            return os.environ[name]
        raise MissingVariable(f"{where}: ${{{name}}} is not set (no server secret or environment variable {name})", where)

    return REF.sub(replace, text)


def server_secrets(server: ToolServer) -> dict[str, str]:
    return {s.name: s.value for s in server.secrets.all()}


def resolve_config(server: ToolServer) -> tuple[UpstreamConfig, list[str]]:
    """The upstream config with references expanded, and the secret values to redact."""
    lookup = server_secrets(server)
    prefix = f"servers.{server.name}"
    env = {k: expand(v, lookup, f"{prefix}.env.{k}") for k, v in (server.env or {}).items()}
    headers = {k: expand(v, lookup, f"{prefix}.headers.{k}") for k, v in (server.headers or {}).items()}
    args = tuple(expand(a, lookup, f"{prefix}.args") for a in server.args or [])
    used_refs = {m.group(1) for v in [*server.env.values(), *server.headers.values()] for m in REF.finditer(v)}
    sensitive = [env_value for key, env_value in env.items() if REF.search(server.env[key])]
    sensitive += [h for key, h in headers.items() if REF.search(server.headers[key])]
    sensitive += [lookup[n] for n in used_refs if n in lookup]
    config = UpstreamConfig(
        name=f"s{server.pk}", transport=server.transport, command=expand(server.command, lookup, f"{prefix}.command"),
        args=args, env=env, cwd=server.cwd or None, url=server.url, headers=headers,
        call_timeout_s=server.call_timeout_s,
    )
    return config, sorted({s for s in sensitive if len(s) >= 4}, key=len, reverse=True)

"""Tool servers and their secrets, and who may set what on them.

Env and header values are stored as `${NAME}` references. A literal value given for one
is moved into the server's encrypted secret store under that name, so no secret is ever
kept in plain text. A reference resolves from the server's secrets; from the process
environment only when the name is on the server's `env_allow` list, which only an
instance operator (or an operator's catalogue template) sets.

What runs on a host is instance-level: only an operator creates or changes a stdio server
(command, args, env, cwd) or an allow-list; team builders add remote (http/sse) servers,
whose URL passes the outbound guard, and install stdio servers from the catalogue.
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import urlsplit

from django.db import transaction

from mcpgateway.authority import check_operator
from mcpgateway.errors import GatewayError, MissingVariable, NotOperator
from mcpgateway.models import SERVER_NAME, ServerSecret, ToolServer, Transport
from mcpgateway.upstream.config import UpstreamConfig

REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SERVER_FIELDS = {"description", "transport", "command", "args", "env", "cwd", "url", "headers", "enabled", "call_timeout_s",
                 "caller_context"}
HOST_FIELDS = ("command", "args", "env", "cwd")


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
    _check_secret_names(fields)
    if fields.get("url"):
        problem = url_reference_problem(str(fields["url"]))
        if problem:
            raise GatewayError(problem, "url")


def _check_secret_names(fields: dict[str, Any]) -> None:
    """Refuse two literal env/header values that would be stored under one secret name
    (`X-Api-Key` and `X_Api_Key` are both `X_API_KEY`): the second value replaced the first,
    silently, and both sent it."""
    first: dict[str, str] = {}
    for section in ("env", "headers"):
        for key, value in (fields.get(section) or {}).items():
            if REF.search(value):
                continue
            name, where = secret_name(key), f"{section}.{key}"
            if first.setdefault(name, where) != where:
                raise GatewayError(f"its value would be stored as the secret {name}, as the value of {first[name]} is: "
                                   f"give one of them as a reference instead (`${{{name}_2}}`, its value in `secrets`)",
                                   where)


def url_reference_problem(url: str) -> str | None:
    """Why the `${NAME}` references of a remote server's URL cannot be expanded, or None. They
    may stand in its path, query or fragment, where no value can move the host its requests
    (and its secrets) go to; a reference in the host, port or user info would let a secret's
    value, which a team member can change, decide that host past the outbound check at save."""
    if not REF.search(url):
        return None
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return None  # not a URL: refused as one
    if REF.search(netloc) or "${" in netloc:
        return ("a `${NAME}` reference may stand in the URL's path or query, not in its host, port or user "
                "info: put a credential in a header")
    return None


def _split_secrets(values: dict[str, str], section: str, given: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(references to store, secrets to encrypt) for env or header values. A literal value stored
    under the name of a secret `given` with another value is refused (one would replace the other)."""
    stored, secrets = {}, {}
    for key, value in values.items():
        if REF.search(value):
            stored[key] = value
        else:
            name = secret_name(key)
            if name in given and given[name] != value:
                raise GatewayError(f"its value would be stored as the secret {name}, which `secrets` gives another "
                                   f"value: give it as the reference `${{{name}}}`, or rename one of them",
                                   f"{section}.{key}")
            stored[key] = "${" + name + "}"
            secrets[name] = value
    return stored, secrets


def check_server_authority(fields: dict[str, Any], *, operator: bool, current: ToolServer | None,
                           env_allow: list[str] | None) -> None:
    """Refuse (403, naming the field) what a team member may not set: anything that runs on the host."""
    if operator:
        return
    if current is not None and current.template_id:
        raise NotOperator(f"server {current.name!r} is installed from the catalogue template {current.template.name!r}: "
                          "a team changes only its parameters and secrets", "name")
    if current is not None and (current.transport == Transport.STDIO or current.env_allow):
        check_operator(False, f"changing the operator-installed server {current.name!r}", "name")
    if fields.get("transport", Transport.STDIO) == Transport.STDIO:
        check_operator(False, "a stdio server (a command run on the host)", "command")
    for key in HOST_FIELDS:
        if fields.get(key):
            check_operator(False, f"`{key}` (it configures a process on the host)", key)
    if env_allow:
        check_operator(False, "reading process environment variables", "env_allow")


def destination(url: str | None) -> tuple[str, ...]:
    """Where a remote server's requests (and its secrets) go: scheme, host and port. A URL
    whose host part holds a `${…}` reference counts as a whole."""
    text = str(url or "")
    try:
        parts = urlsplit(text)
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    except ValueError:
        return ("", text)
    if "${" in parts.netloc or not parts.hostname:
        return ("", text)
    return (parts.scheme.lower(), parts.hostname.lower().rstrip("."), str(port))


def check_references(fields: dict[str, Any], known: set[str], *, operator: bool,
                     env_allow: list[str] | None, left_behind: set[str] = frozenset()) -> list[str]:
    """Every `${NAME}` must name a secret of the server; an operator's other names become (or must be on)
    the server's process-environment allow-list, which is returned. `left_behind`: secrets the
    server had, dropped because its URL moved to another host."""
    allowed = set(env_allow or [])
    inferred: set[str] = set()
    places: list[tuple[str, str]] = [(f"{k}.{n}", v) for k in ("env", "headers") for n, v in (fields.get(k) or {}).items()]
    places += [(f"args.{i}", a) for i, a in enumerate(fields.get("args") or [])]
    places += [(k, str(fields.get(k) or "")) for k in ("command", "cwd", "url")]
    for where, value in places:
        for name in REF.findall(value):
            if name in known or name in allowed:
                continue
            if name in left_behind:
                raise MissingVariable(f"${{{name}}}: the server's URL now points at another host, and a server's secrets "
                                      "go only to the host they were given for: give its value again in `secrets`", where)
            if operator and env_allow is None:
                inferred.add(name)
                continue
            hint = "give its value in `secrets`" if not operator else "add it to `env_allow` or give it in `secrets`"
            raise MissingVariable(f"${{{name}}} is not a secret of this server: {hint} "
                                  "(process environment variables are for instance operators only)", where)
    return sorted(allowed | inferred) if operator else []


def check_remote_url(fields: dict[str, Any]) -> None:
    """A remote server's URL must pass the outbound guard (no loopback, private or metadata addresses)."""
    if fields.get("transport", Transport.STDIO) != Transport.STDIO and fields.get("url"):
        from mcpgateway.outbound import check_url

        check_url(str(fields["url"]), "url")


@transaction.atomic
def do_save_server(team_id: int, name: str, secrets: dict[str, str] | None = None, *, operator: bool,
                   env_allow: list[str] | None = None, **fields: Any) -> ToolServer:
    """Create or update a server by name; literal env/header values become encrypted secrets.

    `operator` says whether the actor is an instance operator (`mcpgateway.authority`): only
    then may the server run a process on the host or read the process environment."""
    check_server(name, fields)
    current = ToolServer.objects.filter(team_id=team_id, name=name).select_related("template").first()
    check_server_authority(fields, operator=operator, current=current, env_allow=env_allow)
    if not operator:  # an operator may point a server anywhere; every connect is still guarded
        check_remote_url(fields)
    new_secrets = dict(secrets or {})
    for key in ("env", "headers"):
        if key in fields:
            fields[key], moved = _split_secrets(fields[key], key, dict(secrets or {}))
            new_secrets.update(moved)
    for secret in new_secrets:
        if not IDENTIFIER.fullmatch(secret):
            raise GatewayError(f"secret name {secret!r} must be an identifier", f"secrets.{secret}")
    stored = set(current.secrets.values_list("name", flat=True)) if current else set()
    left_behind: set[str] = set()
    if (current is not None and not operator and "url" in fields and stored
            and destination(fields["url"]) != destination(current.url)):
        # Moved to another host by a team member: the secrets were given for the old one, maybe
        # by an operator (a licence key the team may use but never read). They stay behind;
        # whoever moves the server gives the new host's secrets.
        left_behind = stored - set(new_secrets)
        stored = set()
    fields["env_allow"] = check_references(fields, stored | set(new_secrets), operator=operator, env_allow=env_allow,
                                           left_behind=left_behind)
    if left_behind:
        current.secrets.filter(name__in=left_behind).delete()
    fields.update(template=None, parameters={})  # raw fields detach a server from its template
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


def expand(text: str, lookup: dict[str, str], where: str, env_allow: frozenset[str] | set[str] = frozenset()) -> str:
    """`${NAME}` from the server's secrets, or from the process environment for allow-listed names only."""
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in lookup:
            return lookup[name]
        if name in env_allow and name in os.environ:
            return os.environ[name]
        raise MissingVariable(f"{where}: ${{{name}}} is not set (not a secret of this server"
                              f"{', nor an allowed environment variable' if name in env_allow else ''})", where)

    return REF.sub(replace, text)


def server_secrets(server: ToolServer) -> dict[str, str]:
    return {s.name: s.value for s in server.secrets.all()}


def resolve_config(server: ToolServer) -> tuple[UpstreamConfig, list[str]]:
    """The upstream config with references expanded, and the secret values to redact.

    The URL's references (path and query only: `url_reference_problem`) are expanded here, for
    the connection alone; the server keeps, and pages show, the URL with its references."""
    lookup = server_secrets(server)
    allow = frozenset(server.env_allow or [])
    prefix = f"servers.{server.name}"
    env = {k: expand(v, lookup, f"{prefix}.env.{k}", allow) for k, v in (server.env or {}).items()}
    headers = {k: expand(v, lookup, f"{prefix}.headers.{k}", allow) for k, v in (server.headers or {}).items()}
    args = tuple(expand(a, lookup, f"{prefix}.args", allow) for a in server.args or [])
    url = _expand_url(server.url or "", lookup, f"{prefix}.url", allow)
    cwd = expand(server.cwd or "", lookup, f"{prefix}.cwd", allow)
    places = [*(server.env or {}).values(), *(server.headers or {}).values(), *(server.args or []), server.command or "",
              server.cwd or "", server.url or ""]
    used_refs = {m.group(1) for v in places for m in REF.finditer(v)}
    sensitive = [env_value for key, env_value in env.items() if REF.search(server.env[key])]
    sensitive += [h for key, h in headers.items() if REF.search(server.headers[key])]
    sensitive += [lookup[n] if n in lookup else os.environ.get(n, "") for n in used_refs]
    config = UpstreamConfig(
        name=f"s{server.pk}", transport=server.transport, command=expand(server.command, lookup, f"{prefix}.command", allow),
        args=args, env=env, cwd=cwd or None, url=url, headers=headers,
        call_timeout_s=server.call_timeout_s,
    )
    return config, sorted({s for s in sensitive if len(s) >= 4}, key=len, reverse=True)


def _expand_url(url: str, lookup: dict[str, str], where: str, env_allow: frozenset[str]) -> str:
    """The URL with its references expanded; its scheme and host part as stored (a server saved
    before references there were refused does not start: MissingVariable, like an unset name)."""
    problem = url_reference_problem(url)
    if problem:
        raise MissingVariable(f"{where}: {problem}", where)
    expanded = expand(url, lookup, where, env_allow)
    if expanded != url and _origin(expanded) != _origin(url):
        raise MissingVariable(f"{where}: a reference's value changed the URL's host; "
                              "a `${NAME}` may stand in its path or query only", where)
    return expanded


def _origin(url: str) -> tuple[str, str]:
    try:
        parts = urlsplit(url)
    except ValueError:
        return ("", url)
    return (parts.scheme, parts.netloc)

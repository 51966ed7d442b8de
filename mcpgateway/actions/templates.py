"""The server catalogue: templates operators install, and servers teams install from them.

A template is a stdio command with `{{param}}` placeholders in its args, env values and
cwd. A team installs it under its own name with values for the declared parameters only;
the values are checked against the parameter schema (kind, required, pattern, length,
path prefix) and rendered into the server's command line and env. A `secret` parameter
is stored encrypted as the server's secret and referenced as `${NAME}`, never rendered.
Updating a template re-renders every installed server; a server whose values no longer
fit is disabled with the reason, not half-updated.
"""

from __future__ import annotations

import os
import re
from typing import Any, Literal

from django.db import transaction
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mcpgateway.actions.servers import (
    IDENTIFIER,
    REF,
    _servers_changed,
    check_server,
    do_delete_server,
    do_set_secret,
    secret_name,
)
from mcpgateway.authority import check_operator
from mcpgateway.errors import GatewayError, NotOperator, ParameterError
from mcpgateway.models import ServerTemplate, ToolServer, Transport

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
# Filled by the gateway with the installing team's id, never by the team: the one value a
# template can bind a server to its team with (`/srv/teams/{{team_id}}`). A path parameter
# could only be held under a prefix, and team A could install `/srv/teams/<team B>` (a review).
TEAM = "team_id"
TEMPLATE_FIELDS = ("description", "command", "args", "env", "cwd", "parameters", "env_allow", "caller_context",
                   "call_timeout_s")


class Conflict(GatewayError):
    code = "conflict"
    status = 409


class TemplateParameter(BaseModel):
    """What a team may fill in: one value, checked before it reaches a command line."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    kind: Literal["string", "secret", "path", "integer"] = "string"
    label: str = Field("", max_length=100)
    description: str = Field("", max_length=300)
    required: bool = True
    default: str | None = Field(None, max_length=500)
    pattern: str | None = Field(None, max_length=300, description="The whole value must match (Python regex).")
    path_prefixes: list[str] = Field(default_factory=list, description="`path`: the value must lie under one of these.")
    max_length: int = Field(500, ge=1, le=10_000)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TemplateParameter:
        if self.kind == "path" and not self.path_prefixes:
            raise ValueError("a path parameter needs at least one allowed prefix in `path_prefixes`")
        if any(not os.path.isabs(p) for p in self.path_prefixes):
            raise ValueError("path prefixes must be absolute")
        if self.kind == "secret" and self.default is not None:
            raise ValueError("a secret parameter has no default")
        return self


class TemplateSpec(BaseModel):
    """A template as an operator writes it (API body, dashboard form, seed)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-zA-Z0-9-]{1,32}$")
    description: str = Field("", max_length=300)
    command: str = Field(min_length=1, max_length=500)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str = Field("", max_length=500)
    parameters: list[TemplateParameter] = Field(default_factory=list)
    env_allow: list[str] = Field(default_factory=list, description="Process environment variables the env may reference.")
    caller_context: bool = False
    call_timeout_s: float = Field(60, gt=0, le=3600)

    @model_validator(mode="after")
    def _placeholders(self) -> TemplateSpec:
        kinds = {p.name: p.kind for p in self.parameters}
        if len(kinds) != len(self.parameters):
            raise ValueError("parameter names must be unique")
        if TEAM in kinds:
            raise ValueError(f"{{{{{TEAM}}}}} is the installing team's id, filled in by the gateway: "
                             "give the parameter another name")
        kinds[TEAM] = "string"
        for name in self.env_allow:
            if not IDENTIFIER.fullmatch(name):
                raise ValueError(f"env_allow: {name!r} is not a variable name")
        places = [("command", self.command), ("cwd", self.cwd), *((f"args.{i}", a) for i, a in enumerate(self.args)),
                  *((f"env.{k}", v) for k, v in self.env.items())]
        for where, text in places:
            for name in PLACEHOLDER.findall(text):
                if name not in kinds:
                    raise ValueError(f"{where}: {{{{{name}}}}} is not a declared parameter")
                if kinds[name] == "secret" and not where.startswith("env."):
                    raise ValueError(f"{where}: the secret parameter {name} may appear only in env values")
            if where == "command" and PLACEHOLDER.search(text):
                raise ValueError("command: the command cannot be a parameter")
            for name in REF.findall(text):
                if name not in self.env_allow:
                    raise ValueError(f"{where}: ${{{name}}} is not on env_allow")
        # What every install would meet, refused here once rather than at each team's install:
        optional = {p.name for p in self.parameters if not p.required and p.default is None}
        for name in PLACEHOLDER.findall(self.cwd):
            if name in optional:
                raise ValueError(f"cwd: {{{{{name}}}}} is optional without a default; a server needs a working directory")
        # Left out, a value that is a whole argument is dropped, but the option before it stayed:
        # `--root {{root}} /srv/x` ran as `--root /srv/x`, the next argument taken as its value.
        for i, arg in enumerate(self.args[1:], start=1):
            alone = PLACEHOLDER.fullmatch(arg.strip())
            before = self.args[i - 1]
            if alone and alone.group(1) in optional and before.startswith("-") and "=" not in before \
                    and not PLACEHOLDER.search(before):
                raise ValueError(f"args.{i}: {{{{{alone.group(1)}}}}} is optional without a default and follows the option "
                                 f"{before!r}, which would be left without its value; write {before}={{{{{alone.group(1)}}}}} "
                                 "as one argument, or give the parameter a default")
        for param in self.parameters:
            if param.default is not None and param.kind != "secret":
                try:
                    _check_value(param, param.default)
                except ParameterError as exc:
                    raise ValueError(f"the default of {param.name}: {exc.message}") from None
        return self


def parse_template(data: dict[str, Any]) -> TemplateSpec:
    """A TemplateSpec, or ParameterError naming the first bad field."""
    try:
        return TemplateSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in first["loc"]) or "template"
        raise ParameterError(first["msg"].removeprefix("Value error, "), field) from None


def template_parameters(template: ServerTemplate) -> list[TemplateParameter]:
    return [TemplateParameter.model_validate(p) for p in template.parameters or []]


def _check_value(param: TemplateParameter, raw: Any) -> str:
    field = f"parameters.{param.name}"
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise ParameterError(f"{param.name} must be text", field)
    value = str(raw).strip() if param.kind != "secret" else str(raw)
    if "\x00" in value or len(value) > param.max_length:
        raise ParameterError(f"{param.name} must be at most {param.max_length} characters, without NUL", field)
    if param.kind == "integer":
        if not re.fullmatch(r"\d{1,18}", value):
            raise ParameterError(f"{param.name} must be a whole number", field)
        value = str(int(value))
    if param.kind in ("string", "path"):
        if "${" in value or "{{" in value:
            raise ParameterError(f"{param.name} cannot contain `${{` or `{{{{`", field)
        if value.startswith("-"):
            raise ParameterError(f"{param.name} cannot start with `-` (it would read as an option)", field)
    if param.kind in ("string", "path") and not (param.kind == "string" and param.pattern) and _climbs(value):
        # A path's `..` after a symlink: the check resolved it physically (inside the prefix)
        # and the value was passed on collapsed lexically (outside it); a string placed inside
        # a template's path climbed out of it the same way (both found by a review). A string
        # the operator gave a pattern is the pattern's to judge.
        raise ParameterError(f"{param.name} cannot contain a `..` path segment", field)
    if param.kind == "path":
        if not os.path.isabs(value):
            raise ParameterError(f"{param.name} must be an absolute path", field)
        real = os.path.realpath(value)
        if not any(os.path.commonpath([real, os.path.realpath(p)]) == os.path.realpath(p) for p in param.path_prefixes):
            raise ParameterError(f"{param.name} must be under {' or '.join(param.path_prefixes)}", field)
        value = os.path.normpath(value)
    if param.pattern and param.kind != "secret" and not re.fullmatch(param.pattern, value):
        raise ParameterError(f"{param.name} does not match the pattern {param.pattern}", field)
    return value


def _climbs(value: str) -> bool:
    return ".." in re.split(r"[/\\]", value)


def check_parameters(template: ServerTemplate, values: dict[str, Any],
                     stored_secrets: set[str]) -> tuple[dict[str, str], dict[str, str]]:
    """(plain values, secret values) for `values`; ParameterError names the first bad parameter.

    An empty secret keeps the stored one, so a form never has to show a secret back."""
    params = template_parameters(template)
    known = {p.name for p in params}
    for name in values:
        if name not in known:
            raise ParameterError(f"{name!r} is not a parameter of the template {template.name!r}", f"parameters.{name}")
    plain: dict[str, str] = {}
    secrets: dict[str, str] = {}
    for param in params:
        raw = values.get(param.name)
        if raw is None or raw == "":
            if param.kind == "secret" and param.name in stored_secrets:
                continue
            if param.default is not None:
                raw = param.default
            elif param.required:
                raise ParameterError(f"{param.name} is required", f"parameters.{param.name}")
            else:
                continue
        value = _check_value(param, raw)
        (secrets if param.kind == "secret" else plain)[param.name] = value
    return plain, secrets


def literal_env(template: ServerTemplate) -> dict[str, tuple[str, str]]:
    """The operator's literal env values (no placeholder, no reference): env key → (secret name, value).

    They may be tokens: each installed server keeps them as its own encrypted secrets and
    its env shows only `${NAME}`, so team members never see them and they are redacted."""
    return {key: (secret_name(key), value) for key, value in (template.env or {}).items()
            if not PLACEHOLDER.search(value) and not REF.search(value)}


def store_literal_env(server: ToolServer, template: ServerTemplate) -> None:
    for name, value in literal_env(template).values():
        do_set_secret(server, name, value)


def composed_env(template: ServerTemplate) -> set[str]:
    """Env keys whose value is the operator's text with placeholders in it
    (`postgresql://svc:<password>@db/{{schema}}`): rendered, such a value holds the operator's
    text, which team members are not shown (`shown_env`)."""
    return {key for key, value in (template.env or {}).items()
            if PLACEHOLDER.search(value) and REF.sub("", PLACEHOLDER.sub("", value)).strip()}


HIDDEN_ENV = "(set by the operator)"


def shown_env(server: ToolServer, operator: bool) -> dict[str, str]:
    """A server's env as pages, the API and exports show it to this reader. A team member is not
    shown the operator's text inside a value: a template's value with placeholders in it
    (`postgresql://svc:<password>@db/{{schema}}`, rendered), or an operator's value with text
    beside a `${NAME}` reference. Those were shown in clear to every member, a viewer too, while
    the catalogue hid them (an outside review). Pure references and a team's own values show."""
    env = dict(server.env or {})
    if operator:
        return env
    if server.template_id is not None:
        hidden = composed_env(server.template)
    else:
        hidden = {k for k, v in env.items() if REF.search(v) and REF.sub("", v).strip()}
    return {k: HIDDEN_ENV if k in hidden else v for k, v in env.items()}


def render(template: ServerTemplate, plain: dict[str, str], secret_names: set[str], team_id: int) -> dict[str, Any]:
    """The server fields for these values: placeholders filled (`{{team_id}}` with `team_id`),
    secret ones as `${NAME}` references, the operator's literal env values as references to the
    server's copies of them."""
    params = template_parameters(template)
    kinds = {p.name: p.kind for p in params} | {TEAM: "string"}
    patterned = {p.name: bool(p.pattern) for p in params} | {TEAM: True}
    plain = {**plain, TEAM: str(int(team_id))}
    literals = literal_env(template)

    def fill(text: str, *, env: bool) -> str | None:
        missing = False

        def one(match: re.Match[str]) -> str:
            nonlocal missing
            name = match.group(1)
            if kinds[name] == "secret":
                if name not in secret_names:
                    missing = True
                return "${" + name + "}"
            if name not in plain:
                missing = True
            return plain.get(name, "")

        result = PLACEHOLDER.sub(one, text)
        names = PLACEHOLDER.findall(text)
        # Values placed next to each other, or next to the operator's text, may make a `..`
        # segment none of them holds (`/srv/data/{{a}}{{b}}/x` with `.` and `.`: a review).
        climbing = [n for n in names if kinds[n] == "path" or (kinds[n] == "string" and not patterned[n])]
        if climbing and _climbs(result) and not _climbs(PLACEHOLDER.sub("x", text)):
            raise ParameterError(f"{', '.join(climbing)} put together make a `..` path segment", f"parameters.{climbing[0]}")
        # An env entry with a value left out is dropped; so is an arg or the cwd whose values
        # were all left out (`--root=` with nothing after it was passed on: a review); one that
        # has some of its values keeps them (`--allowed=main,`), so no restriction is lost.
        if missing and (env or not result or all(n not in plain and kinds[n] != "secret" for n in names)):
            return None
        return result

    args = [a for a in (fill(a, env=False) for a in template.args or []) if a is not None]
    cwd = fill(template.cwd or "", env=False)
    if template.cwd and not cwd:
        # Left out, the server started in the gateway's own directory, beside `var/` (a review).
        needed = ", ".join(sorted(set(PLACEHOLDER.findall(template.cwd))))
        raise ParameterError(f"the working directory {template.cwd!r} needs a value for {needed}", "parameters")
    env = {k: "${" + literals[k][0] + "}" if k in literals else v
           for k, v in ((k, fill(v, env=True)) for k, v in (template.env or {}).items()) if v is not None}
    return {"transport": Transport.STDIO, "command": template.command, "args": args, "env": env,
            "cwd": cwd or "", "url": "", "headers": {},
            "caller_context": template.caller_context, "call_timeout_s": template.call_timeout_s,
            "env_allow": list(template.env_allow or [])}


# --- operators: templates ---------------------------------------------------------------------


@transaction.atomic
def do_save_template(data: dict[str, Any], *, operator: bool) -> ServerTemplate:
    """Create or update a template by name; its installed servers follow."""
    check_operator(operator, "installing a server template", "name")
    spec = parse_template(data)
    defaults = spec.model_dump(include=set(TEMPLATE_FIELDS))
    template, _ = ServerTemplate.objects.update_or_create(name=spec.name, defaults=defaults)
    for server in template.instances.prefetch_related("secrets"):
        rerender(server, template)
    transaction.on_commit(_servers_changed)
    return template


def rerender(server: ToolServer, template: ServerTemplate) -> None:
    stored = {s.name for s in server.secrets.all()}
    try:
        plain, _ = check_parameters(template, dict(server.parameters or {}), stored)
        fields = render(template, plain, stored, server.team_id)
    except ParameterError as exc:
        ToolServer.objects.filter(pk=server.pk).update(
            enabled=False, health_error=f"disabled: the template {template.name!r} changed and {exc.message}")
        return
    ToolServer.objects.filter(pk=server.pk).update(parameters=plain, **fields)
    store_literal_env(server, template)


def installed_values_problem(server: ToolServer) -> str | None:
    """Why an installed server's stored values no longer pass its template's checks (a check
    added by an upgrade: values saved before it was there), or None. The supervisor starts no
    server with a problem; a builder enters the values again."""
    template = server.template
    if template is None:
        return None
    stored = {s.name for s in server.secrets.all()}
    try:
        plain, _ = check_parameters(template, dict(server.parameters or {}), stored)
        render(template, plain, stored, server.team_id)
    except ParameterError as exc:
        return f"not started: its values for the template {template.name!r} fail a check ({exc.message}); enter them again"
    except (ValidationError, ValueError, TypeError) as exc:
        # The template row itself no longer reads (saved before a check existed, or written by
        # a newer release): that server's problem, never the resync's — raised, it stopped every
        # other team's servers from being started or stopped in this process (a review).
        first = str(exc).splitlines()[0][:200]
        return f"not started: the template {template.name!r} no longer reads ({first}); an operator saves it again"
    return None


@transaction.atomic
def do_delete_template(template: ServerTemplate, *, operator: bool, force: bool = False) -> None:
    """Remove a template; with `force`, also the servers teams installed from it (else 409 while any exists)."""
    check_operator(operator, "removing a server template", "name")
    instances = list(template.instances.all())
    if instances and not force:
        raise Conflict(f"{len(instances)} server(s) are installed from {template.name!r}; remove them first "
                       "or remove the template with force", "force")
    for server in instances:
        do_delete_server(server)
    template.delete()


# --- teams: servers from the catalogue -----------------------------------------------------------


@transaction.atomic
def do_install_template(team_id: int, template: ServerTemplate, name: str, values: dict[str, Any],
                        description: str = "") -> ToolServer:
    """A team's own server from a template, with its own parameter values and secrets."""
    check_server(name, {"transport": Transport.STDIO, "command": template.command})
    if ToolServer.objects.filter(team_id=team_id, name=name).exists():
        raise Conflict(f"this team already has a server named {name!r}", "name")
    plain, secrets = check_parameters(template, values, set())
    fields = render(template, plain, set(secrets), team_id)
    server = ToolServer.objects.create(team_id=team_id, name=name, template=template, parameters=plain,
                                       description=description or template.description, **fields)
    for secret, value in secrets.items():
        do_set_secret(server, secret, value)
    store_literal_env(server, template)
    transaction.on_commit(_servers_changed)
    return server


@transaction.atomic
def do_update_installed(server: ToolServer, values: dict[str, Any], description: str | None = None) -> ToolServer:
    """Change an installed server's parameters and secrets; nothing else of it can change this way."""
    if server.template_id is None:
        raise GatewayError(f"server {server.name!r} is not installed from the catalogue", "parameters")
    template = server.template
    stored = set(server.secrets.values_list("name", flat=True))
    plain, secrets = check_parameters(template, {**(server.parameters or {}), **values}, stored)
    fields = render(template, plain, stored | set(secrets), server.team_id)
    for key, value in {**fields, "parameters": plain}.items():
        setattr(server, key, value)
    if description is not None:
        server.description = description
    server.save()
    for secret, value in secrets.items():
        do_set_secret(server, secret, value)
    store_literal_env(server, template)
    transaction.on_commit(_servers_changed)
    return server


@transaction.atomic
def do_install_builtin(team_id: int, spec: dict[str, Any], *, overwrite: bool = True, offer: bool = False) -> ToolServer:
    """Instance-level code (seeding, shipped suites, the sandbox): offer a fixed, parameterless template
    written in code and give the team its server from it, named like the template. With `overwrite`
    (instance-level code), a team's existing server of that name becomes the template's (its grants
    are kept); without it (a team member's action), an existing server of that name that is not
    already this install is never changed: Conflict. Without `offer` (a team member's action: only
    an operator, or instance code, decides what the catalogue offers) the template must exist: a
    builder's "create from template" and "install the injection suite" wrote back the sandbox,
    code and office templates an operator had removed, and started their processes (a review)."""
    existing = ServerTemplate.objects.filter(name=spec["name"]).first()
    if existing is None and not offer:
        raise NotOperator(f"the built-in {spec['name']!r} tool server is not offered on this instance: ask an instance "
                          f"operator to offer it (the same action, done once by an operator, offers it)", "name")
    if existing is not None and not overwrite:
        # A team-level action (installing a shipped eval suite) never rewrites what an operator
        # installed for every team: an existing template of that name is used as it is.
        template = existing
    else:
        template = do_save_template(spec, operator=True)
    server = ToolServer.objects.filter(team_id=team_id, name=template.name).first()
    if server is None:
        return do_install_template(team_id, template, template.name, {})
    if server.template_id != template.pk and not overwrite:
        # Converting it would wipe its URL and headers and point its grants at a host process.
        raise Conflict(f"this team already has its own server named {template.name!r}; rename or remove it "
                       f"to install the built-in {template.name!r} server", "name")
    if server.template_id != template.pk:
        ToolServer.objects.filter(pk=server.pk).update(template=template, parameters={}, url="", headers={})
        rerender(server, template)
    server.refresh_from_db()
    return server

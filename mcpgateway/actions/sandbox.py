"""The built-in sandbox tool server: an operator-level catalogue template, installed per team.

Its settings (image, user, network, runtime, limits) are the template's args, from
`settings.SANDBOX` with overrides; only instance-level code (seeding, an operator) sets
them. A team's `sandbox` server is installed from the template and has no parameters, so
nothing about how code is isolated can be changed from inside a team.
"""

from __future__ import annotations

import sys

from django.conf import settings

from mcpgateway.errors import GatewayError
from mcpgateway.models import ToolServer
from mcpgateway.sandbox.config import SandboxConfig

SANDBOX_SERVER = "sandbox"


def sandbox_config(**overrides: object) -> SandboxConfig:
    """The configured defaults (`settings.SANDBOX`), with overrides; GatewayError when invalid."""
    try:
        return SandboxConfig(**{**settings.SANDBOX, **overrides})
    except (TypeError, ValueError) as exc:
        raise GatewayError(f"sandbox settings: {exc}", "sandbox") from None


def sandbox_template(**overrides: object) -> dict[str, object]:
    """The `sandbox` template: a stdio server this process starts, which runs code only in
    containers. It receives the caller context (session, network grant)."""
    config = sandbox_config(**overrides)
    env = {"DOCKER_HOST": settings.SANDBOX_DOCKER_HOST} if settings.SANDBOX_DOCKER_HOST else {}
    return {
        "name": SANDBOX_SERVER, "description": "Built-in sandbox: runs code in locked-down Docker containers",
        "command": sys.executable, "args": ["-m", "mcpgateway.sandbox.server", *config.to_argv()],
        "env": env, "env_allow": [], "cwd": str(settings.BASE_DIR),
        "caller_context": True, "call_timeout_s": config.max_timeout_s + 30,
    }


def do_install_sandbox(team_id: int, **overrides: object) -> ToolServer:
    """Instance-level: (re)write the sandbox template with `overrides` (for every team) and give the
    team its `sandbox` server from it."""
    from mcpgateway.actions.templates import do_install_builtin

    return do_install_builtin(team_id, sandbox_template(**overrides), offer=True)  # (instance-level code)

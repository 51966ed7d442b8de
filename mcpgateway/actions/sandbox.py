"""Installing the built-in sandbox tool server for a team."""

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


def do_install_sandbox(team_id: int, **overrides: object) -> ToolServer:
    """Create or update the team's `sandbox` server: a stdio server this process starts, which
    runs code only in containers. It receives the caller context (session, network grant)."""
    from mcpgateway.actions.servers import do_save_server

    config = sandbox_config(**overrides)
    env = {"DOCKER_HOST": settings.SANDBOX_DOCKER_HOST} if settings.SANDBOX_DOCKER_HOST else {}
    return do_save_server(
        team_id, SANDBOX_SERVER, description="Built-in sandbox: runs code in locked-down Docker containers",
        transport="stdio", command=sys.executable, args=["-m", "mcpgateway.sandbox.server", *config.to_argv()],
        env=env, cwd=str(settings.BASE_DIR), caller_context=True, call_timeout_s=config.max_timeout_s + 30,
    )

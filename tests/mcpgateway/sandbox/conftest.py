"""Sandbox fixtures: a real Docker engine, the built-in sandbox server behind the gateway.

`make test` installs and starts the engine and builds the image (`make sandbox-engine`);
without them these tests fail with that instruction rather than skip.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import docker
import pytest
from asgiref.sync import async_to_sync

from mcpgateway.actions.access import do_grant
from mcpgateway.actions.sandbox import do_install_sandbox
from mcpgateway.background import submit
from mcpgateway.dispatch import Gateway
from mcpgateway.sandbox.backends.docker import LABEL
from mcpgateway.types import Principal, ToolInvocation, ToolResult
from tests.conftest import start_servers

pytestmark = pytest.mark.docker


def sandbox_containers(client: docker.DockerClient) -> list[dict[str, Any]]:
    return client.api.containers(all=True, filters={"label": f"{LABEL}=1"})


def wait_until_no_containers(client: docker.DockerClient, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while sandbox_containers(client):
        assert time.monotonic() < deadline, f"sandbox containers left behind: {sandbox_containers(client)}"
        time.sleep(0.1)


class SandboxCaller:
    """Calls sandbox tools through the gateway's dispatch path as one agent of team 1."""

    def __init__(self, runtime, server):
        self.runtime = runtime
        self.server = server

    def __call__(self, tool: str, arguments: dict[str, Any], *, agent: str = "tester",
                 run_id: int | None = None) -> ToolResult:
        invocation = ToolInvocation(Principal(team_id=1, agent=agent), f"sandbox__{tool}", arguments,
                                    call_id=f"c{time.monotonic_ns()}", run_id=run_id)
        return async_to_sync(Gateway(1).call_tool)(invocation)

    def run(self, code: str, **kwargs: Any) -> dict[str, Any]:
        """run_python's structured result; fails the test if the tool itself errored."""
        result = self("run_python", {"code": code, **kwargs.pop("arguments", {})}, **kwargs)
        assert not result.is_error, result.content
        return result.data["structured"]


@pytest.fixture
def make_sandbox(gateway_runtime, docker_client, tmp_path) -> Iterator[Callable[..., SandboxCaller]]:
    """`make_sandbox(**settings)`: install the sandbox server for team 1 with those settings
    (workspaces saved under the test's own directory), grant it to agent `tester`, start it.
    After the test: the server is stopped, and not one sandbox container may be left."""

    def make(grant: dict[str, Any] | None = None, **overrides: Any) -> SandboxCaller:
        defaults = {"pool": 0, "timeout_s": 10, "state_dir": str(tmp_path / "sandbox-state")}
        server = do_install_sandbox(1, **{**defaults, **overrides})
        do_grant(server, agent="tester", **(grant or {}))
        start_servers(gateway_runtime, server)
        return SandboxCaller(gateway_runtime, server)

    yield make
    submit(gateway_runtime.stop()).result(timeout=60)
    wait_until_no_containers(docker_client)


def structured(result: ToolResult) -> dict[str, Any]:
    return result.data["structured"] if result.data and result.data.get("structured") else json.loads(result.content)

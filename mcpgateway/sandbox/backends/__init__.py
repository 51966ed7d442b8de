"""Sandbox backends, chosen by name. A backend makes, runs and removes containers; the
policy (pool, sessions, workspaces, results) lives in `mcpgateway.sandbox.service`.

Adding one: a module with a class implementing `Backend`, and one line in BACKENDS.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Protocol

from mcpgateway.sandbox.config import SandboxConfig
from mcpgateway.sandbox.errors import SandboxUnavailable

BACKENDS = {
    "docker": "mcpgateway.sandbox.backends.docker:DockerBackend",
}


@dataclass(slots=True)
class Box:
    """One started container."""

    id: str
    network: bool
    created: float
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class RawExecution:
    """What the runner wrote to stdout and stderr, and whether the host had to kill the box."""

    stdout: bytes
    stderr: bytes
    killed: str = ""  # "timeout" or "output" when the host killed the container


class Backend(Protocol):
    def check(self) -> None:
        """Raise SandboxUnavailable unless the engine answers and the image is present."""

    def start(self, *, network: bool, session: str) -> Box: ...

    def execute(self, box: Box, payload: bytes, *, timeout_s: float, max_bytes: int) -> RawExecution:
        """Run the runner in the box with `payload` on its stdin; kill the box past the limits."""

    def remove(self, box: Box) -> None: ...

    def reap(self) -> int:
        """Remove leftover containers (expired, or owned by a process that is gone); how many."""

    def close(self) -> None: ...


def get_backend(config: SandboxConfig) -> Backend:
    try:
        module_name, _, class_name = BACKENDS[config.backend].partition(":")
    except KeyError:
        raise SandboxUnavailable(f"unknown sandbox backend {config.backend!r}; known: {', '.join(BACKENDS)}") from None
    return getattr(importlib.import_module(module_name), class_name)(config)

"""How sandboxes are made: one frozen config, read from the server's command line.

The built-in `sandbox` tool server is an ordinary stdio server row, so its settings are
its `args` (visible and editable like any server's); `agentdeck_sandbox_args()` in
`mcpgateway.sandbox.setup` derives the defaults from the `AGENTDECK_SANDBOX_*` settings.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields

DEFAULT_IMAGE = "agentdeck/sandbox-python:1"


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    backend: str = "docker"
    image: str = DEFAULT_IMAGE
    # "execution": a fresh container for every call (the workspace is carried between
    # calls by the server); "session": one container per caller session, reused.
    mode: str = "execution"
    runtime: str = ""  # e.g. "runsc" for gVisor; empty: the engine's default (runc)
    user: str = "65534:65534"
    memory_mb: int = 256
    cpus: float = 1.0
    pids: int = 64
    workspace_mb: int = 64
    tmp_mb: int = 16
    timeout_s: float = 30.0
    max_timeout_s: float = 300.0
    output_bytes: int = 64 * 1024  # stays under GATEWAY_RESULT_MAX_CHARS with the JSON around it
    network: str = "bridge"  # the Docker network of calls whose grant allows the network
    pool: int = 2  # started containers kept ready ("execution" mode, no network)
    idle_s: float = 900.0  # a session's container and workspace are dropped after this idle time
    lifetime_s: float = 3600.0  # no container lives longer (the reaper's bound)
    max_file_bytes: int = 8 * 1024 * 1024
    # Where execution-mode workspaces are kept between calls and across restarts of this
    # server (relative to its working directory); empty: in memory only.
    state_dir: str = "var/sandbox"

    def __post_init__(self) -> None:
        if self.mode not in ("execution", "session"):
            raise ValueError(f"mode must be 'execution' or 'session', not {self.mode!r}")
        for name in ("memory_mb", "pids", "workspace_mb", "tmp_mb", "output_bytes", "max_file_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not 0 < self.timeout_s <= self.max_timeout_s:
            raise ValueError("timeout_s must be positive and at most max_timeout_s")
        if self.cpus <= 0 or self.pool < 0:
            raise ValueError("cpus must be positive and pool not negative")

    @classmethod
    def from_argv(cls, argv: list[str]) -> SandboxConfig:
        parser = argparse.ArgumentParser(prog="python -m mcpgateway.sandbox.server",
                                         description="Agentdeck's sandboxed code-execution MCP server (stdio).")
        for f in fields(cls):
            flag = "--" + f.name.replace("_", "-")
            kind = type(f.default)
            parser.add_argument(flag, type=kind, default=f.default, help=f"default: {f.default!r}")
        return cls(**vars(parser.parse_args(argv)))

    def to_argv(self) -> list[str]:
        """The flags that differ from the defaults (for a server row's `args`)."""
        default = SandboxConfig()
        argv: list[str] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value != getattr(default, f.name):
                argv += ["--" + f.name.replace("_", "-"), str(value)]
        return argv

"""What the upstream side of the gateway takes and gives: plain dataclasses and its errors.

`UpstreamConfig` says how to reach one upstream MCP server (already validated and with
secrets expanded by the caller); `Discovery`, `UpstreamResult` and `Health` are what the
supervisor reports back. No Django, no SDK types: everything here is plain data that the
Django side can store, compare and serialise.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

SERVER_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,32}\Z")  # (\Z: `$` also matches before a final newline)

Transport = Literal["stdio", "http", "sse"]
HealthState = Literal["starting", "up", "down", "stopped"]


class UpstreamError(Exception):
    """Base of the errors a call to an upstream can raise."""


class UpstreamUnavailable(UpstreamError):
    """The server is unknown, not connected yet, down, or its connection closed mid-call."""


class UpstreamLost(UpstreamUnavailable):
    """The request was sent, then the connection closed before its answer: the call may have
    run (a server that died mid-call), unlike one that never reached the server."""


class UpstreamTimeout(UpstreamError):
    """The upstream did not answer within the call (or connect) timeout."""


@dataclass(frozen=True)
class UpstreamConfig:
    """How to start or reach one upstream server.

    `env` and `headers` usually carry secrets: they are left out of `repr()` so a config
    can be logged. Two configs compare equal when every field is equal, which is how the
    supervisor decides whether `add()` must restart a server.
    """

    name: str
    transport: Transport
    command: str = ""
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    cwd: str | None = None
    url: str = ""
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    call_timeout_s: float = 60.0
    connect_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not SERVER_NAME_RE.match(self.name):
            raise ValueError(f"server name {self.name!r} must match {SERVER_NAME_RE.pattern}")
        if self.transport not in ("stdio", "http", "sse"):
            raise ValueError(f"unknown transport {self.transport!r}")
        if self.transport == "stdio" and not self.command:
            raise ValueError(f"stdio server {self.name!r} needs a command")
        if self.transport in ("http", "sse") and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"{self.transport} server {self.name!r} needs an http(s) url")
        if self.call_timeout_s <= 0 or self.connect_timeout_s <= 0:
            raise ValueError("timeouts must be positive")
        # Freeze the mutable parts so a config cannot change under a running upstream.
        object.__setattr__(self, "args", tuple(self.args))
        object.__setattr__(self, "env", MappingProxyType(dict(self.env)))
        object.__setattr__(self, "headers", MappingProxyType(dict(self.headers)))


@dataclass
class DiscoveredTool:
    """A tool as the upstream lists it (input schema is JSON Schema, as sent)."""

    name: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None = None
    annotations: dict[str, Any] | None = None


@dataclass
class Discovery:
    """Everything an upstream offers, fetched after connecting and after each list change.

    `resources`, `resource_templates` and `prompts` are the SDK models dumped as JSON
    dicts (wire field names); they are empty when the server lacks the capability.
    """

    tools: list[DiscoveredTool]
    resources: list[dict[str, Any]]
    prompts: list[dict[str, Any]]
    server_info: dict[str, Any]
    resource_templates: list[dict[str, Any]] = field(default_factory=list)
    protocol_version: str = ""
    capabilities: dict[str, Any] = field(default_factory=dict)
    instructions: str = ""


def summarise_block(block: Mapping[str, Any]) -> str:
    """One content block as text: text as is, anything else as a short bracketed label."""
    kind = block.get("type", "unknown")
    if kind == "text":
        return str(block.get("text", ""))
    if kind in ("image", "audio"):
        return f"[{kind} {block.get('mimeType', 'unknown')}]"
    if kind == "resource":
        return f"[resource {(block.get('resource') or {}).get('uri', '')}]"
    if kind == "resource_link":
        return f"[resource_link {block.get('uri', '')}]"
    return f"[{kind}]"


@dataclass
class UpstreamResult:
    """A `tools/call` answer: MCP content blocks as JSON dicts, structured content, error flag.

    A tool that fails reports `is_error=True` with its message in `content`; so does a
    JSON-RPC error the upstream answers a call with (the message reads `MCP error <code>:
    ...`). Only transport trouble raises (`UpstreamUnavailable`, `UpstreamTimeout`).
    """

    content: list[dict[str, Any]]
    structured: dict[str, Any] | None = None
    is_error: bool = False

    def text(self) -> str:
        """The text blocks joined with newlines; other blocks summarised like `[image image/png]`."""
        return "\n".join(summarise_block(block) for block in self.content)


@dataclass
class Health:
    """The supervisor's view of one upstream.

    `since` is when the state last changed (`time.time()`); `restarts` counts connection
    attempts after the first one; `pid` is the stdio child's process id while it runs.
    """

    state: HealthState
    error: str = ""
    since: float = field(default_factory=time.time)
    restarts: int = 0
    pid: int | None = None

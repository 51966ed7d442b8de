"""The tools seam: what a caller (the engine, an eval, an MCP client) sees of the gateway.

Pure dataclasses and one protocol, no Django. The gateway's dispatch path implements
`Toolbox`; `mcpgateway.inprocess` is a small in-process implementation for tests and
demos with the same interface.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


@dataclass(slots=True)
class ToolSpec:
    """A tool as a model sees it: name, description and JSON Schema of its input."""

    name: str
    description: str
    input_schema: dict[str, Any]
    # A call a crash interrupted may be made again on resume (read-only or idempotent tool).
    retry_safe: bool = False
    # The server's `readOnlyHint` annotation: the data-flow policy never holds back such a call
    # when the hint is trusted (below) and the agent does not list the tool in `dataflow_tools`.
    read_only: bool = False
    # The hint comes from a server an instance operator installed (stdio, or from the catalogue):
    # a team-added remote server could call its exfiltrating tool "read-only".
    trusted_hint: bool = False


@dataclass(slots=True)
class ToolResult:
    """A tool's answer. `is_error` results go back to the model as data, not exceptions."""

    content: str
    is_error: bool = False
    data: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToolResult:
        return cls(content=data["content"], is_error=data.get("is_error", False), data=data.get("data"))


@dataclass(slots=True)
class Principal:
    """Who is calling: the gateway knows callers only by these ids."""

    team_id: int
    agent: str | None = None
    user_id: int | None = None
    api_key_id: int | None = None


@dataclass(slots=True)
class ToolInvocation:
    """One call through the gateway, with where it happens (for audit and idempotency)."""

    principal: Principal
    name: str
    arguments: dict[str, Any]
    call_id: str = ""
    run_id: int | None = None
    step_key: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    # Stable per call (`mcpgateway.idempotency`), the same when the call is made again; sent upstream.
    idempotency_key: str = ""


class ToolDenied(Exception):
    """The principal may not call this tool (unknown, not granted, or disabled)."""


class CallLost(Exception):
    """A run's call was sent and its server's connection closed before the answer: it may
    have run. Audited `interrupted`; the run decides as for any interrupted call."""


class Toolbox(Protocol):
    """The one interface through which tools are listed and called."""

    async def list_tools(self, principal: Principal) -> list[ToolSpec]: ...

    async def call_tool(self, invocation: ToolInvocation) -> ToolResult: ...


class ApprovalRequired(Exception):
    """The grant asks a human to approve this call first; `approval_id` names the request.

    Raised to callers that can pause (pipeline runs); external clients wait instead.
    """

    def __init__(self, approval_id: int, tool: str):
        super().__init__(f"calling {tool} needs a human approval (request #{approval_id})")
        self.approval_id = approval_id
        self.tool = tool


def plain_scalar(value: Any) -> bool:
    """Whether `value` is a JSON scalar that every serialiser writes the same way: a string,
    an integer, a boolean, null or a finite float (JSON has no NaN or infinity; pydantic's
    dump would turn them into null)."""
    kind = type(value)
    return kind is str or kind is int or kind is bool or value is None or (kind is float and math.isfinite(value))


def plain_key(key: Any) -> bool:
    """Whether `key` is an object key every serialiser writes: a string that UTF-8 can encode
    (JSON's `\\ud800` escape decodes to a lone surrogate, which pydantic's dump refuses)."""
    if type(key) is not str:
        return False
    if key.isascii():
        return True
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True

"""Value types shared by the engine, the model providers and the tools seam.

A provider-neutral conversation: providers translate these to and from their wire
formats; the engine, the ledger and the events only ever see these.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from mcpgateway.types import ToolResult, ToolSpec

__all__ = [
    "Message",
    "ModelRequest",
    "ModelResponse",
    "Role",
    "ToolCall",
    "ToolResult",
    "ToolSpec",
    "Usage",
]

Role = Literal["user", "assistant", "tool"]


@dataclass(slots=True)
class ToolCall:
    """A model's request to call one tool."""

    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(slots=True)
class Message:
    """One entry of an agent's conversation.

    `user` carries the prompt; `assistant` carries text and/or tool calls; `tool` carries
    one tool result (`tool_call_id` names the call, `is_error` marks a failed call).
    """

    role: Role
    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str | None = None
    is_error: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Message:
        calls = [ToolCall(**c) for c in data.get("tool_calls", [])]
        return cls(
            role=data["role"],
            content=data.get("content", ""),
            tool_calls=calls,
            tool_call_id=data.get("tool_call_id"),
            is_error=data.get("is_error", False),
        )


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(slots=True)
class ModelRequest:
    """Everything a provider needs for one call.

    `options` holds the agent's provider-specific settings (base URL, API key variable,
    scripted replies); providers validate what they read from it.
    """

    model: str
    system: str
    messages: list[Message]
    tools: list[ToolSpec] = field(default_factory=list)
    temperature: float | None = None
    max_tokens: int = 1024
    options: dict[str, Any] = field(default_factory=dict)
    # Where the call happens: {"run_id", "step", "attempt", "turn"}; informational, and
    # what the scripted provider keys deterministic failures on.
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ModelResponse:
    """What a provider returns: the assistant's text and tool calls, and token usage."""

    text: str
    tool_calls: list[ToolCall]
    usage: Usage
    stop_reason: str
    model: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelResponse:
        return cls(
            text=data["text"],
            tool_calls=[ToolCall(**c) for c in data["tool_calls"]],
            usage=Usage(**data["usage"]),
            stop_reason=data["stop_reason"],
            model=data["model"],
        )

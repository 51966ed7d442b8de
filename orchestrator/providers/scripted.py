"""A deterministic provider whose replies are written in the agent's config.

For tests, demos and dry runs; it is labelled as not a real model. `options["script"]`:

    {"replies": [Reply, ...],
     "rules": [{"if_contains": "text", "replies": [Reply, ...]}, ...]}

The first rule whose `if_contains` occurs (case-insensitively) in the first user
message picks its replies, else the top-level ones. Turn t (the number of assistant
messages so far) gets reply `min(t, len - 1)`. A reply may wait (`delay_ms`), fail
(`error`, on every attempt or only those in `fail_attempts`), call tools, and fix its
`usage`; its text may use `{{prompt}}` (first user message) and `{{last}}` (last
message). No network, no randomness: the same request always gets the same response.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator.engine.errors import ProviderError
from orchestrator.engine.types import ModelRequest, ModelResponse, ToolCall, Usage
from orchestrator.providers.base import (
    DeltaCallback,
    describe_validation_error,
    estimate_input_tokens,
)

DEFAULT_TEXT = "(scripted reply)"
DELTA_CHARS = 16


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScriptedToolCall(_Strict):
    name: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)


class ScriptedUsage(_Strict):
    input_tokens: int | None = Field(default=None, ge=0)
    output_tokens: int | None = Field(default=None, ge=0)


class Reply(_Strict):
    text: str = ""
    tool_calls: list[ScriptedToolCall] = Field(default_factory=list)
    delay_ms: int = Field(default=0, ge=0)
    error: str | None = None
    retryable: bool = True
    fail_attempts: list[int] = Field(default_factory=list)
    usage: ScriptedUsage | None = None


class Rule(_Strict):
    if_contains: str = Field(min_length=1)
    replies: list[Reply] = Field(min_length=1)


class Script(_Strict):
    replies: list[Reply] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)


class ScriptedProvider:
    """Answers from `options["script"]`; see the module docstring for the format."""

    name = "scripted"
    label = "Scripted (deterministic test provider, not a real model)"

    async def count_input_tokens(self, request: ModelRequest) -> int:
        """Exact: scripted replies report this many input tokens."""
        return estimate_input_tokens(request)

    async def complete(
        self, request: ModelRequest, on_delta: DeltaCallback | None = None
    ) -> ModelResponse:
        """Play the reply the script holds for this turn."""
        script = parse_script(request.options.get("script"))
        turn = sum(1 for m in request.messages if m.role == "assistant")
        replies = choose_replies(script, first_user_content(request)) or [Reply(text=DEFAULT_TEXT)]
        reply = replies[min(turn, len(replies) - 1)]

        if reply.delay_ms:
            await asyncio.sleep(reply.delay_ms / 1000)
        if reply.error is not None and (
            not reply.fail_attempts or request.meta.get("attempt") in reply.fail_attempts
        ):
            raise ProviderError(reply.error, retryable=reply.retryable)

        text = render(reply.text, request)
        tool_calls = [
            ToolCall(id=f"call_{turn}_{i}", name=call.name, arguments=dict(call.arguments))
            for i, call in enumerate(reply.tool_calls)
        ]
        usage = scripted_usage(reply, request, text)
        stop_reason = "tool_use" if tool_calls else "end_turn"
        if usage.output_tokens > request.max_tokens:
            # Like a real model: the answer stops at max_tokens, cut mid-way, without tool calls.
            usage.output_tokens = request.max_tokens
            text = text[: request.max_tokens * 4]
            tool_calls, stop_reason = [], "max_tokens"
        if on_delta is not None:
            for start in range(0, len(text), DELTA_CHARS):
                await on_delta(text[start : start + DELTA_CHARS])
        return ModelResponse(text=text, tool_calls=tool_calls, usage=usage, stop_reason=stop_reason, model=request.model)


def parse_script(data: Any) -> Script:
    """Validate a script; a malformed one is a non-retryable error naming the bad field."""
    try:
        return Script.model_validate(data or {})
    except ValidationError as exc:
        raise ProviderError(
            f"invalid scripted-provider script: {describe_validation_error(exc, root='script')}",
            retryable=False,
        ) from exc


def choose_replies(script: Script, prompt: str) -> list[Reply]:
    """The first matching rule's replies, else the top-level ones."""
    lowered = prompt.lower()
    for rule in script.rules:
        if rule.if_contains.lower() in lowered:
            return rule.replies
    return script.replies


def first_user_content(request: ModelRequest) -> str:
    return next((m.content for m in request.messages if m.role == "user"), "")


def render(text: str, request: ModelRequest) -> str:
    """Fill `{{prompt}}` and `{{last}}`; nothing else in the text is interpreted."""
    last = request.messages[-1].content if request.messages else ""
    return text.replace("{{prompt}}", first_user_content(request)).replace("{{last}}", last)


def scripted_usage(reply: Reply, request: ModelRequest, text: str) -> Usage:
    """About four characters a token, ten per tool call; the reply's `usage` wins."""
    usage = Usage(
        input_tokens=estimate_input_tokens(request),
        output_tokens=max(1, math.ceil(len(text) / 4)) + 10 * len(reply.tool_calls),
    )
    if reply.usage is not None:
        if reply.usage.input_tokens is not None:
            usage.input_tokens = reply.usage.input_tokens
        if reply.usage.output_tokens is not None:
            usage.output_tokens = reply.usage.output_tokens
    return usage

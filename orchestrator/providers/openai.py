"""OpenAI-compatible chat completions through the official `openai` SDK.

One adapter for OpenAI and for local servers that speak its protocol (Ollama, vLLM,
LM Studio, llama.cpp server): a team points its model credential's base URL at them (through
the outbound guard), an operator `settings.OPENAI_BASE_URL`. The key: the agent's credential,
else the env var an operator named in `options["api_key_env"]`, else `settings.OPENAI_API_KEY`,
else a placeholder, since local servers need none.

Stop reasons are reported in the same words as the other providers: `end_turn`,
`tool_use`, `max_tokens`; anything else passes through as the server said it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import openai
from openai.types.chat import ChatCompletionChunk

from orchestrator.engine.errors import ProviderError
from orchestrator.engine.types import Message, ModelRequest, ModelResponse, ToolCall, Usage
from orchestrator.providers.base import (
    ClientCache,
    DeltaCallback,
    EndpointOptions,
    IdleDeadline,
    byte_bound_tokens,
    guarded_http_client,
    model_timeout_s,
    parse_options,
    resolve_endpoint,
    retryable_status,
    timed_out,
)

PLACEHOLDER_API_KEY = "not-needed"

_STOP_REASONS = {
    "stop": "end_turn",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "length": "max_tokens",
}


class OpenAIOptions(EndpointOptions):
    """Endpoint options plus which field carries the output token limit.

    OpenAI deprecated `max_tokens` for `max_completion_tokens` (its reasoning models
    reject the old one) while Ollama and LM Studio only read `max_tokens`. Unset, the
    new field goes to api.openai.com and the old one to every other server.
    """

    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] | None = None


class OpenAIProvider:
    """Calls an OpenAI-compatible `/chat/completions` endpoint with streaming."""

    name = "openai"
    label = "OpenAI-compatible (OpenAI, Ollama, vLLM, LM Studio, llama.cpp)"

    def __init__(self) -> None:
        self._clients: ClientCache[openai.AsyncOpenAI] = ClientCache(_make_client)

    async def complete(
        self, request: ModelRequest, on_delta: DeltaCallback | None = None
    ) -> ModelResponse:
        """Stream one chat completion, passing each text delta to `on_delta`."""
        options = parse_options(OpenAIOptions, request.options, provider="openai")
        endpoint = await resolve_endpoint("openai", options, request.options,
                                          key_setting="OPENAI_API_KEY", url_setting="OPENAI_BASE_URL")
        base_url = endpoint.base_url
        client = self._clients.get(base_url, endpoint.api_key or PLACEHOLDER_API_KEY, endpoint.guarded)
        params = build_params(request, max_tokens_field=_max_tokens_field(options, base_url))

        reply = _ReplyBuilder()
        async with aclosing(_stream(client, params)) as chunks:
            async for chunk in chunks:
                text = reply.add(chunk)
                if text and on_delta is not None:
                    await on_delta(text)
        return reply.finish(request.model)


    async def count_input_tokens(self, request: ModelRequest) -> int:
        """A local upper bound on the call's input tokens (no tokenizer of the server's model is
        available here): the UTF-8 bytes of its messages (system prompt included) and tools, plus
        the template allowance; see `byte_bound_tokens`."""
        params = build_params(request, max_tokens_field="max_tokens")
        return byte_bound_tokens({"messages": params["messages"], "tools": params.get("tools", [])},
                                 tools=bool(request.tools))


def _make_client(base_url: str | None, api_key: str | None, guarded: bool) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key=api_key, base_url=base_url, max_retries=0, timeout=model_timeout_s(),
        http_client=guarded_http_client(guarded),
    )


def _max_tokens_field(options: OpenAIOptions, base_url: str | None) -> str:
    if options.max_tokens_field:
        return options.max_tokens_field
    host = urlsplit(base_url).hostname if base_url else "api.openai.com"
    return "max_completion_tokens" if host == "api.openai.com" else "max_tokens"


async def _stream(
    client: openai.AsyncOpenAI, params: dict[str, Any]
) -> AsyncIterator[ChatCompletionChunk]:
    """The SDK boundary: yields chunks; SDK failures become `ProviderError` here."""
    try:
        stream = await client.chat.completions.create(**params, timeout=model_timeout_s())
        async with stream:
            async for chunk in IdleDeadline(stream, "OpenAI-compatible"):
                yield chunk
    except openai.APIError as exc:
        raise to_provider_error(exc) from exc
    except ValueError as exc:
        # A `data:` line that is not JSON (a proxy's error page spliced in, a truncated line):
        # the SDK's json.JSONDecodeError. Retryable like any garbled answer, as Anthropic's.
        raise ProviderError(f"OpenAI-compatible endpoint returned an unparseable stream: {exc}") from exc


def build_params(request: ModelRequest, *, max_tokens_field: str) -> dict[str, Any]:
    """Keyword arguments for `client.chat.completions.create` from a neutral request."""
    params: dict[str, Any] = {
        "model": request.model,
        "messages": to_wire_messages(request.system, request.messages),
        "stream": True,
        "stream_options": {"include_usage": True},
        max_tokens_field: request.max_tokens,
    }
    if request.tools:
        params["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.input_schema,
                },
            }
            for t in request.tools
        ]
    if request.temperature is not None:
        params["temperature"] = request.temperature
    return params


def to_wire_messages(system: str, messages: list[Message]) -> list[dict[str, Any]]:
    """Neutral conversation -> chat `messages`, system prompt first.

    The protocol has no error flag on tool results, so a failed call's result is
    prefixed with "ERROR: " for the model to see.
    """
    wire: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for message in messages:
        if message.role == "user":
            wire.append({"role": "user", "content": message.content})
        elif message.role == "assistant":
            entry: dict[str, Any] = {"role": "assistant", "content": message.content}
            if message.tool_calls:
                entry["content"] = message.content or None
                entry["tool_calls"] = [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                    }
                    for call in message.tool_calls
                ]
            wire.append(entry)
        else:
            content = f"ERROR: {message.content}" if message.is_error else message.content
            wire.append({"role": "tool", "tool_call_id": message.tool_call_id, "content": content})
    return wire


@dataclass
class _PartialCall:
    id: str | None = None
    name: str = ""
    arguments: str = ""


class _ReplyBuilder:
    """Assembles streamed chunks: text, tool calls by index, finish reason, usage."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.calls: dict[int, _PartialCall] = {}
        self.finish_reason: str | None = None
        self.usage = Usage()
        self.model: str | None = None

    def add(self, chunk: ChatCompletionChunk) -> str:
        """Take one chunk in; return its text delta ("" if none)."""
        self.model = chunk.model or self.model
        if chunk.usage is not None:
            self.usage = Usage(
                input_tokens=chunk.usage.prompt_tokens or 0,
                output_tokens=chunk.usage.completion_tokens or 0,
            )
        text = ""
        for choice in chunk.choices:
            if (choice.index or 0) != 0:  # only the first choice; n is never set
                continue
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason
            text += choice.delta.content or ""
            for position, delta in enumerate(choice.delta.tool_calls or []):
                index = delta.index if delta.index is not None else position
                call = self.calls.setdefault(index, _PartialCall())
                call.id = call.id or delta.id
                if delta.function is not None:
                    call.name = call.name or delta.function.name or ""
                    call.arguments += delta.function.arguments or ""
        self.text.append(text)
        return text

    def finish(self, requested_model: str) -> ModelResponse:
        if self.finish_reason is None:
            raise ProviderError(
                "OpenAI-compatible stream ended without a finish_reason", retryable=True
            )
        tool_calls = [
            ToolCall(
                id=call.id or f"call_{index}",
                name=call.name,
                arguments=_parse_arguments(call),
            )
            for index, call in sorted(self.calls.items())
        ]
        # Some servers (Ollama) finish a tool-calling turn with "stop".
        stop_reason = "tool_use" if tool_calls else _STOP_REASONS.get(self.finish_reason)
        return ModelResponse(
            text="".join(self.text),
            tool_calls=tool_calls,
            usage=self.usage,
            stop_reason=stop_reason or self.finish_reason,
            model=self.model or requested_model,
        )


def _parse_arguments(call: _PartialCall) -> dict[str, Any]:
    if not call.arguments.strip():
        return {}
    try:
        arguments = json.loads(call.arguments)
    except json.JSONDecodeError as exc:
        raise ProviderError(
            f"model sent invalid JSON arguments for tool {call.name!r}: {exc.msg} "
            f"(got {call.arguments[:200]!r})",
            retryable=True,
        ) from exc
    if not isinstance(arguments, dict):
        raise ProviderError(
            f"model sent tool arguments for {call.name!r} that are not a JSON object: "
            f"{call.arguments[:200]!r}",
            retryable=True,
        )
    return arguments


def to_provider_error(exc: openai.APIError) -> ProviderError:
    """An SDK error -> ProviderError, retryable for timeouts, connection loss, 429, 5xx."""
    if isinstance(exc, openai.APITimeoutError):
        return timed_out("OpenAI-compatible")
    if isinstance(exc, openai.APIConnectionError):
        return ProviderError(
            f"cannot reach the OpenAI-compatible server at {exc.request.url}: {exc}",
            retryable=True,
        )
    detail = _error_detail(exc)
    if isinstance(exc, openai.APIStatusError):
        return ProviderError(
            f"OpenAI-compatible server returned {exc.status_code}: {detail}",
            retryable=retryable_status(exc.status_code, exc.response.headers),
        )
    # An error object inside an otherwise successful stream.
    retryable = exc.type not in ("invalid_request_error", "authentication_error")
    return ProviderError(f"OpenAI-compatible stream failed: {detail}", retryable=retryable)


def _error_detail(exc: openai.APIError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    if isinstance(body, str) and body:
        return body[:500]
    return exc.message

"""Claude through the official `anthropic` SDK: Messages API, streaming, tool use.

Where calls go and with which key: the agent's model credential (its base URL through the
outbound guard), else what an operator set in `options["base_url"]`/`options["api_key_env"]`,
else `settings.ANTHROPIC_BASE_URL`/`settings.ANTHROPIC_API_KEY`, else the SDK default URL.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import anthropic
import httpx2
from anthropic.types import Message as WireMessage

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

log = logging.getLogger(__name__)

# Error types the API reports in a body (or mid-stream `error` event) that retrying
# cannot fix; anything else (overloaded, api_error, rate limits, timeouts) may pass.
_PERMANENT_ERROR_TYPES = frozenset(
    {
        "invalid_request_error",
        "authentication_error",
        "permission_error",
        "not_found_error",
        "request_too_large",
        "billing_error",
    }
)


class AnthropicProvider:
    """Calls Anthropic's Messages API with streaming."""

    name = "anthropic"
    label = "Anthropic (Claude, Messages API)"

    def __init__(self) -> None:
        self._clients: ClientCache[anthropic.AsyncAnthropic] = ClientCache(_make_client)

    async def complete(
        self, request: ModelRequest, on_delta: DeltaCallback | None = None
    ) -> ModelResponse:
        """Stream one Messages API call, passing each text delta to `on_delta`."""
        options = parse_options(EndpointOptions, request.options, provider="anthropic")
        endpoint = await resolve_endpoint("anthropic", options, request.options,
                                          key_setting="ANTHROPIC_API_KEY", url_setting="ANTHROPIC_BASE_URL")
        if endpoint.api_key is None:
            raise ProviderError(
                "no Anthropic API key: give the agent a model credential, or set ANTHROPIC_API_KEY",
                retryable=False,
            )
        client = self._clients.get(endpoint.base_url, endpoint.api_key, endpoint.guarded)

        final: WireMessage | None = None
        async with aclosing(_stream(client, build_params(request))) as items:
            async for item in items:
                if isinstance(item, str):
                    if on_delta is not None:
                        await on_delta(item)
                else:
                    final = item
        if final is None or final.stop_reason is None:
            raise ProviderError(
                "Anthropic stream ended before the message was complete", retryable=True
            )
        return to_response(final, request.model)


    async def count_input_tokens(self, request: ModelRequest) -> int:
        """The call's input tokens by Anthropic's counter (`POST /v1/messages/count_tokens`):
        system prompt, tools and messages, as the Messages API will count them.

        Where the endpoint cannot answer (a proxy without it, a transient failure), the byte
        upper bound of the request is used instead: never less than the call will use.
        """
        params = build_params(request)
        body = {key: params[key] for key in ("model", "messages", "system", "tools") if key in params}
        try:
            options = parse_options(EndpointOptions, request.options, provider="anthropic")
            endpoint = await resolve_endpoint("anthropic", options, request.options,
                                              key_setting="ANTHROPIC_API_KEY", url_setting="ANTHROPIC_BASE_URL")
            client = self._clients.get(endpoint.base_url, endpoint.api_key, endpoint.guarded)
            counted = await client.messages.count_tokens(**body, timeout=model_timeout_s())
            return int(counted.input_tokens)
        except (anthropic.APIError, httpx2.TransportError, ProviderError) as exc:
            log.warning("Anthropic token counting failed (%s); reserving the byte upper bound", exc)
            return byte_bound_tokens({k: v for k, v in body.items() if k != "model"}, tools=bool(request.tools))


def _make_client(base_url: str | None, api_key: str | None, guarded: bool) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        api_key=api_key, base_url=base_url, max_retries=0, timeout=model_timeout_s(),
        http_client=guarded_http_client(guarded),
    )


async def _stream(
    client: anthropic.AsyncAnthropic, params: dict[str, Any]
) -> AsyncIterator[str | WireMessage]:
    """The SDK boundary: yields text deltas, then the final message.

    SDK and transport failures become `ProviderError` here; whatever the caller's
    `on_delta` raises happens outside this frame and propagates untouched.
    """
    try:
        async with client.messages.stream(**params, timeout=model_timeout_s()) as stream:
            async for event in IdleDeadline(stream, "Anthropic"):
                if event.type == "text":
                    yield event.text
            yield await stream.get_final_message()
    except anthropic.APIError as exc:
        raise to_provider_error(exc) from exc
    except httpx2.TransportError as exc:
        raise ProviderError(f"Anthropic connection failed mid-stream: {exc}") from exc
    except ValueError as exc:
        # The SDK raises ValueError for tool input JSON it cannot parse.
        raise ProviderError(f"Anthropic returned an unparseable response: {exc}") from exc


def build_params(request: ModelRequest) -> dict[str, Any]:
    """Keyword arguments for `client.messages.stream` from a neutral request."""
    params: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens,
        "messages": to_wire_messages(request.messages),
    }
    if request.system:
        params["system"] = request.system
    if request.tools:
        params["tools"] = [
            {"name": t.name, "description": t.description, "input_schema": t.input_schema}
            for t in request.tools
        ]
    if request.temperature is not None:
        # The SDK dropped `temperature` from its signature; the API still takes it.
        params["extra_body"] = {"temperature": request.temperature}
    return params


def to_wire_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Neutral conversation -> Messages API `messages`.

    Consecutive `tool` messages become one user message of `tool_result` blocks, as the
    API wants every result for a turn's tool calls in the next user message.
    """
    wire: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for message in messages:
        if message.role != "tool" and results:
            wire.append({"role": "user", "content": results})
            results = []
        if message.role == "user":
            wire.append({"role": "user", "content": message.content})
        elif message.role == "assistant":
            blocks = _assistant_blocks(message)
            if blocks:  # an empty assistant turn says nothing and the API rejects it
                wire.append({"role": "assistant", "content": blocks})
        else:
            results.append(
                {
                    "type": "tool_result",
                    "tool_use_id": message.tool_call_id,
                    "content": message.content,
                    "is_error": message.is_error,
                }
            )
    if results:
        wire.append({"role": "user", "content": results})
    return wire


def _assistant_blocks(message: Message) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if message.content:
        blocks.append({"type": "text", "text": message.content})
    blocks.extend(
        {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
        for call in message.tool_calls
    )
    return blocks


def to_response(message: WireMessage, requested_model: str) -> ModelResponse:
    """The SDK's final message -> a neutral response.

    Input tokens include cache writes and reads: together they are what the call consumed.
    """
    usage = message.usage
    input_tokens = (
        usage.input_tokens
        + (usage.cache_creation_input_tokens or 0)
        + (usage.cache_read_input_tokens or 0)
    )
    return ModelResponse(
        text="".join(block.text for block in message.content if block.type == "text"),
        tool_calls=[
            ToolCall(id=block.id, name=block.name, arguments=dict(block.input))
            for block in message.content
            if block.type == "tool_use"
        ],
        usage=Usage(input_tokens=input_tokens, output_tokens=usage.output_tokens),
        stop_reason=str(message.stop_reason),
        model=message.model or requested_model,
    )


def to_provider_error(exc: anthropic.APIError) -> ProviderError:
    """An SDK error -> ProviderError, retryable for timeouts, connection loss, 429, 5xx."""
    if isinstance(exc, anthropic.APITimeoutError):
        return timed_out("Anthropic")
    if isinstance(exc, anthropic.APIConnectionError):
        return ProviderError(f"cannot reach Anthropic at {exc.request.url}: {exc}", retryable=True)
    if isinstance(exc, anthropic.APIStatusError):
        detail = exc.api_message or exc.message
        kind = f" ({exc.type})" if exc.type else ""
        if exc.status_code >= 400:
            retryable = retryable_status(exc.status_code, exc.response.headers)
            return ProviderError(
                f"Anthropic API returned {exc.status_code}{kind}: {detail}", retryable=retryable
            )
        # An `error` event in an otherwise successful stream, e.g. overloaded_error.
        retryable = exc.type not in _PERMANENT_ERROR_TYPES
        return ProviderError(f"Anthropic stream failed{kind}: {detail}", retryable=retryable)
    return ProviderError(f"Anthropic call failed: {exc.message}", retryable=True)

"""The OpenAI-compatible provider, through the official SDK, against a loopback server."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator

import openai
import pytest

from orchestrator.engine.errors import ProviderError
from orchestrator.engine.types import Message, ModelRequest, ModelResponse, ToolCall, ToolSpec
from orchestrator.providers import get_provider
from orchestrator.providers.openai import OpenAIProvider
from tests.fakes.openai_server import FakeOpenAIServer

# The fake servers listen on loopback, which the outbound guard refuses unless allowed.
pytestmark = pytest.mark.usefixtures("outbound_allows_loopback")

KEY_ENV = "AGENTDECK_TEST_OPENAI_KEY"
SEARCH = ToolSpec(
    name="search",
    description="Search the catalogue.",
    input_schema={"type": "object", "properties": {"q": {"type": "string"}}},
)


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-test")


def make_request(server: FakeOpenAIServer, **fields: object) -> ModelRequest:
    values: dict[str, object] = {
        "model": "llama3",
        "system": "",
        "messages": [Message(role="user", content="Hi")],
        "options": {"base_url": server.base_url, "api_key_env": KEY_ENV},
    }
    values.update(fields)
    return ModelRequest(**values)  # type: ignore[arg-type]


def complete(request: ModelRequest) -> tuple[ModelResponse, list[str]]:
    deltas: list[str] = []

    async def on_delta(text: str) -> None:
        deltas.append(text)

    response = asyncio.run(OpenAIProvider().complete(request, on_delta))
    return response, deltas


def failure(request: ModelRequest) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        complete(request)
    return caught.value


def test_it_streams_text_deltas_in_order(server: FakeOpenAIServer) -> None:
    server.push(text=["Hel", "lo, ", "wor", "ld"])

    response, deltas = complete(make_request(server))

    assert deltas == ["Hel", "lo, ", "wor", "ld"]
    assert response.text == "Hello, world"
    assert response.stop_reason == "end_turn"
    assert response.tool_calls == []


def test_it_round_trips_a_tool_call(server: FakeOpenAIServer) -> None:
    server.push(tool_calls=[{"id": "call_1", "name": "search", "arguments": {"q": "llamas"}}])
    server.push(text="Found 3 llamas.")
    ask = make_request(server, tools=[SEARCH])

    first, _ = complete(ask)
    assert first.tool_calls == [ToolCall(id="call_1", name="search", arguments={"q": "llamas"})]
    assert first.stop_reason == "tool_use"

    history = [
        *ask.messages,
        Message(role="assistant", content=first.text, tool_calls=first.tool_calls),
        Message(role="tool", content="3 results", tool_call_id="call_1"),
    ]
    second, _ = complete(make_request(server, tools=[SEARCH], messages=history))

    assert second.text == "Found 3 llamas."
    user, assistant, tool = server.requests[1].body["messages"]
    assert user == {"role": "user", "content": "Hi"}
    assert assistant["role"] == "assistant"
    assert assistant["content"] is None
    [call] = assistant["tool_calls"]
    assert (call["id"], call["type"], call["function"]["name"]) == ("call_1", "function", "search")
    assert json.loads(call["function"]["arguments"]) == {"q": "llamas"}
    assert tool == {"role": "tool", "tool_call_id": "call_1", "content": "3 results"}


def test_it_assembles_several_streamed_tool_calls_by_index(server: FakeOpenAIServer) -> None:
    server.push(
        text="Two searches.",
        tool_calls=[
            {"id": "call_a", "name": "search", "arguments": {"q": "alpacas"}},
            {"id": "call_b", "name": "lookup", "arguments": {"id": 7, "deep": True}},
        ],
    )

    response, _ = complete(make_request(server, tools=[SEARCH]))

    assert response.text == "Two searches."
    assert response.tool_calls == [
        ToolCall(id="call_a", name="search", arguments={"q": "alpacas"}),
        ToolCall(id="call_b", name="lookup", arguments={"id": 7, "deep": True}),
    ]


def test_it_reports_a_tool_call_even_when_the_server_says_stop(server: FakeOpenAIServer) -> None:
    server.push(tool_calls=[{"name": "search", "arguments": {}}], finish_reason="stop")

    response, _ = complete(make_request(server, tools=[SEARCH]))

    assert response.stop_reason == "tool_use"
    assert response.tool_calls[0].arguments == {}


def test_it_rejects_invalid_tool_arguments_as_retryable(server: FakeOpenAIServer) -> None:
    server.push(tool_calls=[{"name": "search", "arguments": '{"q": "unterminated'}])

    error = failure(make_request(server, tools=[SEARCH]))

    assert error.retryable is True
    assert "invalid JSON arguments" in str(error)
    assert "'search'" in str(error)


def test_it_marks_failed_tool_results_for_the_model(server: FakeOpenAIServer) -> None:
    server.push(text="Sorry.")
    history = [
        Message(role="user", content="Search"),
        Message(role="assistant", tool_calls=[ToolCall(id="c1", name="search", arguments={})]),
        Message(role="tool", content="index offline", tool_call_id="c1", is_error=True),
    ]

    complete(make_request(server, messages=history))

    assert server.requests[0].body["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "c1",
        "content": "ERROR: index offline",
    }


def test_it_reports_usage_from_the_final_chunk(server: FakeOpenAIServer) -> None:
    server.push(text="Hi", prompt_tokens=321, completion_tokens=54)

    response, _ = complete(make_request(server))

    assert server.requests[0].body["stream_options"] == {"include_usage": True}
    assert (response.usage.input_tokens, response.usage.output_tokens) == (321, 54)


def test_it_reports_zero_usage_when_the_server_sends_none(server: FakeOpenAIServer) -> None:
    server.push(text="Hi", send_usage=False)

    response, _ = complete(make_request(server))

    assert (response.usage.input_tokens, response.usage.output_tokens) == (0, 0)


def test_it_sends_system_first_with_temperature_max_tokens_and_tools(
    server: FakeOpenAIServer,
) -> None:
    server.push(text="ok")

    complete(
        make_request(server, system="Be terse.", temperature=0.3, max_tokens=77, tools=[SEARCH])
    )

    body = server.requests[0].body
    assert server.requests[0].path == "/v1/chat/completions"
    assert body["model"] == "llama3"
    assert body["stream"] is True
    assert body["messages"][0] == {"role": "system", "content": "Be terse."}
    assert body["temperature"] == 0.3
    assert body["max_tokens"] == 77
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "search",
                "description": "Search the catalogue.",
                "parameters": SEARCH.input_schema,
            },
        }
    ]


def test_it_leaves_out_temperature_and_system_when_unset(server: FakeOpenAIServer) -> None:
    server.push(text="ok")

    complete(make_request(server))

    body = server.requests[0].body
    assert "temperature" not in body
    assert "tools" not in body
    assert body["messages"] == [{"role": "user", "content": "Hi"}]


def test_it_can_send_the_limit_as_max_completion_tokens(server: FakeOpenAIServer) -> None:
    server.push(text="ok")
    options = {
        "base_url": server.base_url,
        "api_key_env": KEY_ENV,
        "max_tokens_field": "max_completion_tokens",
    }

    complete(make_request(server, max_tokens=64, options=options))

    assert server.requests[0].body["max_completion_tokens"] == 64
    assert "max_tokens" not in server.requests[0].body


def test_it_rejects_an_unknown_max_tokens_field(server: FakeOpenAIServer) -> None:
    options = {"base_url": server.base_url, "max_tokens_field": "max_new_tokens"}

    error = failure(make_request(server, options=options))

    assert error.retryable is False
    assert "options.max_tokens_field" in str(error)


def test_it_authenticates_with_the_key_named_by_api_key_env(server: FakeOpenAIServer) -> None:
    server.push(text="ok")

    complete(make_request(server))

    assert server.requests[0].headers["authorization"] == "Bearer sk-test"


def test_it_sends_a_placeholder_key_to_servers_that_need_none(
    server: FakeOpenAIServer, settings
) -> None:
    settings.OPENAI_API_KEY = ""
    server.push(text="ok")

    response, _ = complete(make_request(server, options={"base_url": server.base_url}))

    assert response.text == "ok"
    assert server.requests[0].headers["authorization"] == "Bearer not-needed"


def test_it_falls_back_to_settings_for_base_url_and_key(server: FakeOpenAIServer, settings) -> None:
    settings.OPENAI_BASE_URL = server.base_url
    settings.OPENAI_API_KEY = "sk-from-settings"
    server.push(text="ok")

    complete(make_request(server, options={}))

    assert server.requests[0].headers["authorization"] == "Bearer sk-from-settings"


@pytest.mark.parametrize("status", [429, 500, 503])
def test_it_maps_rate_limits_and_server_errors_to_retryable(
    server: FakeOpenAIServer, status: int
) -> None:
    server.push_error(status, "try later")

    error = failure(make_request(server))

    assert error.retryable is True
    assert str(status) in str(error)
    assert "try later" in str(error)


@pytest.mark.parametrize("status", [400, 401])
def test_it_maps_bad_requests_and_auth_failures_to_permanent(
    server: FakeOpenAIServer, status: int
) -> None:
    server.push_error(status, "nope")

    error = failure(make_request(server))

    assert error.retryable is False
    assert str(status) in str(error)


def test_it_leaves_retries_to_the_engine(server: FakeOpenAIServer) -> None:
    server.push_error(500)
    server.push(text="would have succeeded on a retry")

    failure(make_request(server))

    assert len(server.requests) == 1


def test_it_maps_a_timeout_to_retryable(server: FakeOpenAIServer, settings) -> None:
    settings.MODEL_TIMEOUT_S = 0.2
    server.push(text="too late", delay_s=1.0)

    error = failure(make_request(server))

    assert error.retryable is True
    assert "timed out" in str(error)


def test_it_maps_an_unreachable_server_to_retryable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    request = ModelRequest(
        model="llama3",
        system="",
        messages=[Message(role="user", content="Hi")],
        options={"base_url": f"http://127.0.0.1:{port}/v1", "api_key_env": KEY_ENV},
    )

    error = failure(request)

    assert error.retryable is True


def test_it_is_registered_as_openai() -> None:
    provider = get_provider("openai")

    assert isinstance(provider, OpenAIProvider)
    assert get_provider("openai") is provider


def test_the_fake_server_also_answers_non_streaming_requests(server: FakeOpenAIServer) -> None:
    server.push(
        text="Plain.", tool_calls=[{"id": "call_9", "name": "search", "arguments": {"q": "x"}}]
    )

    async def call() -> object:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
        async with client:
            return await client.chat.completions.create(
                model="llama3", messages=[{"role": "user", "content": "Hi"}]
            )

    completion = asyncio.run(call())

    message = completion.choices[0].message  # type: ignore[attr-defined]
    assert message.content == "Plain."
    assert message.tool_calls[0].function.name == "search"
    assert completion.usage.prompt_tokens == 12  # type: ignore[attr-defined]

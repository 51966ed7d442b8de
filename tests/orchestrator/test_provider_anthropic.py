"""The Anthropic provider, through the official SDK, against a loopback Messages API."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from orchestrator.engine.errors import ProviderError
from orchestrator.engine.types import Message, ModelRequest, ModelResponse, ToolCall, ToolSpec
from orchestrator.providers import get_provider
from orchestrator.providers.anthropic import AnthropicProvider
from tests.fakes.anthropic_server import FakeAnthropicServer

# The fake servers listen on loopback, which the outbound guard refuses unless allowed.
pytestmark = pytest.mark.usefixtures("outbound_allows_loopback")

KEY_ENV = "AGENTDECK_TEST_ANTHROPIC_KEY"
SEARCH = ToolSpec(
    name="search",
    description="Search the catalogue.",
    input_schema={"type": "object", "properties": {"q": {"type": "string"}}},
)


@pytest.fixture
def server() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer() as fake:
        yield fake


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-ant-test")


def make_request(server: FakeAnthropicServer, **fields: object) -> ModelRequest:
    values: dict[str, object] = {
        "model": "claude-test",
        "system": "",
        "messages": [Message(role="user", content="Hi")],
        "options": {"base_url": server.url, "api_key_env": KEY_ENV},
    }
    values.update(fields)
    return ModelRequest(**values)  # type: ignore[arg-type]


def complete(request: ModelRequest) -> tuple[ModelResponse, list[str]]:
    deltas: list[str] = []

    async def on_delta(text: str) -> None:
        deltas.append(text)

    response = asyncio.run(AnthropicProvider().complete(request, on_delta))
    return response, deltas


def failure(request: ModelRequest) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        complete(request)
    return caught.value


def test_it_streams_text_deltas_in_order(server: FakeAnthropicServer) -> None:
    server.push(text=["Hel", "lo, ", "wor", "ld"])

    response, deltas = complete(make_request(server))

    assert deltas == ["Hel", "lo, ", "wor", "ld"]
    assert response.text == "Hello, world"
    assert response.stop_reason == "end_turn"
    assert response.tool_calls == []


def test_it_round_trips_a_tool_call(server: FakeAnthropicServer) -> None:
    server.push(
        text="Let me look.",
        tool_calls=[{"id": "toolu_1", "name": "search", "input": {"q": "llamas"}}],
    )
    server.push(text="Found 3 llamas.")
    ask = make_request(server, tools=[SEARCH])

    first, _ = complete(ask)
    assert first.tool_calls == [ToolCall(id="toolu_1", name="search", arguments={"q": "llamas"})]
    assert first.stop_reason == "tool_use"

    history = [
        *ask.messages,
        Message(role="assistant", content=first.text, tool_calls=first.tool_calls),
        Message(role="tool", content="3 results", tool_call_id="toolu_1"),
    ]
    second, _ = complete(make_request(server, tools=[SEARCH], messages=history))

    assert second.text == "Found 3 llamas."
    assert server.requests[1].body["messages"] == [
        {"role": "user", "content": "Hi"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "toolu_1", "name": "search", "input": {"q": "llamas"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": "3 results",
                    "is_error": False,
                }
            ],
        },
    ]


def test_it_sends_consecutive_tool_results_as_one_user_message(server: FakeAnthropicServer) -> None:
    server.push(text="Done.")
    calls = [
        ToolCall(id="t1", name="search", arguments={"q": "a"}),
        ToolCall(id="t2", name="search", arguments={"q": "b"}),
    ]
    history = [
        Message(role="user", content="Search twice"),
        Message(role="assistant", tool_calls=calls),
        Message(role="tool", content="ok", tool_call_id="t1"),
        Message(role="tool", content="boom", tool_call_id="t2", is_error=True),
    ]

    complete(make_request(server, messages=history))

    wire = server.requests[0].body["messages"]
    assert [m["role"] for m in wire] == ["user", "assistant", "user"]
    assert wire[1]["content"] == [
        {"type": "tool_use", "id": "t1", "name": "search", "input": {"q": "a"}},
        {"type": "tool_use", "id": "t2", "name": "search", "input": {"q": "b"}},
    ]
    assert wire[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "t1", "content": "ok", "is_error": False},
        {"type": "tool_result", "tool_use_id": "t2", "content": "boom", "is_error": True},
    ]


def test_it_reports_usage(server: FakeAnthropicServer) -> None:
    server.push(text="Hi", input_tokens=321, output_tokens=54)

    response, _ = complete(make_request(server))

    assert (response.usage.input_tokens, response.usage.output_tokens) == (321, 54)


def test_it_sends_system_temperature_max_tokens_and_tools(server: FakeAnthropicServer) -> None:
    server.push(text="ok")

    complete(
        make_request(server, system="Be terse.", temperature=0.3, max_tokens=77, tools=[SEARCH])
    )

    body = server.requests[0].body
    assert server.requests[0].path == "/v1/messages"
    assert body["model"] == "claude-test"
    assert body["stream"] is True
    assert body["system"] == "Be terse."
    assert body["temperature"] == 0.3
    assert body["max_tokens"] == 77
    assert body["tools"] == [
        {
            "name": "search",
            "description": "Search the catalogue.",
            "input_schema": SEARCH.input_schema,
        }
    ]


def test_it_leaves_out_temperature_and_system_when_unset(server: FakeAnthropicServer) -> None:
    server.push(text="ok")

    complete(make_request(server))

    assert "temperature" not in server.requests[0].body
    assert "system" not in server.requests[0].body
    assert "tools" not in server.requests[0].body


def test_it_authenticates_with_the_key_named_by_api_key_env(server: FakeAnthropicServer) -> None:
    server.push(text="ok")

    complete(make_request(server))

    assert server.requests[0].headers["authorization"] == "Bearer sk-ant-test"


def test_it_falls_back_to_settings_for_base_url_and_key(
    server: FakeAnthropicServer, settings
) -> None:
    settings.ANTHROPIC_BASE_URL = server.url
    settings.ANTHROPIC_API_KEY = "sk-ant-from-settings"
    server.push(text="ok")

    response, _ = complete(make_request(server, options={}))

    assert response.text == "ok"
    assert server.requests[0].headers["authorization"] == "Bearer sk-ant-from-settings"


def test_it_refuses_to_call_without_a_key(server: FakeAnthropicServer, settings) -> None:
    settings.ANTHROPIC_API_KEY = ""

    error = failure(make_request(server, options={"base_url": server.url}))

    assert error.retryable is False
    assert "ANTHROPIC_API_KEY" in str(error)
    assert server.requests == []


@pytest.mark.parametrize("status", [429, 500, 529])
def test_it_maps_rate_limits_and_server_errors_to_retryable(
    server: FakeAnthropicServer, status: int
) -> None:
    server.push_error(status, "try later")

    error = failure(make_request(server))

    assert error.retryable is True
    assert str(status) in str(error)
    assert "try later" in str(error)


@pytest.mark.parametrize("status", [400, 401])
def test_it_maps_bad_requests_and_auth_failures_to_permanent(
    server: FakeAnthropicServer, status: int
) -> None:
    server.push_error(status, "nope")

    error = failure(make_request(server))

    assert error.retryable is False
    assert str(status) in str(error)


def test_it_maps_an_overloaded_error_mid_stream_to_retryable(server: FakeAnthropicServer) -> None:
    server.push_error(200, "Overloaded", error_type="overloaded_error", mid_stream=True)

    error = failure(make_request(server))

    assert error.retryable is True
    assert "overloaded_error" in str(error)


def test_it_leaves_retries_to_the_engine(server: FakeAnthropicServer) -> None:
    server.push_error(500)
    server.push(text="would have succeeded on a retry")

    failure(make_request(server))

    assert len(server.requests) == 1


def test_it_maps_a_timeout_to_retryable(server: FakeAnthropicServer, settings) -> None:
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
        model="claude-test",
        system="",
        messages=[Message(role="user", content="Hi")],
        options={"base_url": f"http://127.0.0.1:{port}", "api_key_env": KEY_ENV},
    )

    error = failure(request)

    assert error.retryable is True


def test_it_lets_errors_from_on_delta_propagate(server: FakeAnthropicServer) -> None:
    server.push(text="Hello")

    async def on_delta(text: str) -> None:
        raise RuntimeError("subscriber went away")

    with pytest.raises(RuntimeError, match="subscriber went away"):
        asyncio.run(AnthropicProvider().complete(make_request(server), on_delta))


def test_it_is_registered_as_anthropic() -> None:
    provider = get_provider("anthropic")

    assert isinstance(provider, AnthropicProvider)
    assert get_provider("anthropic") is provider


def test_it_reuses_one_client_and_connection_within_an_event_loop(
    server: FakeAnthropicServer,
) -> None:
    server.push(text="one")
    server.push(text="two")
    provider = AnthropicProvider()

    async def twice() -> list[str]:
        request = make_request(server)
        return [(await provider.complete(request)).text, (await provider.complete(request)).text]

    assert asyncio.run(twice()) == ["one", "two"]
    assert server.requests[0].client_port == server.requests[1].client_port

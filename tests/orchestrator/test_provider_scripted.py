"""The scripted provider: deterministic replies from the agent's config, no network."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from orchestrator.engine.errors import ProviderError
from orchestrator.engine.types import Message, ModelRequest, ModelResponse, ToolCall
from orchestrator.providers import PROVIDERS, get_provider, provider_choices
from orchestrator.providers.scripted import ScriptedProvider


def make_request(
    script: dict[str, Any] | None = None,
    messages: list[Message] | None = None,
    *,
    system: str = "",
    attempt: int = 1,
) -> ModelRequest:
    return ModelRequest(
        model="scripted-1",
        system=system,
        messages=messages if messages is not None else [Message(role="user", content="Hi")],
        options={} if script is None else {"script": script},
        meta={"run_id": 1, "step": "draft", "attempt": attempt, "turn": 0},
    )


def complete(request: ModelRequest) -> tuple[ModelResponse, list[str]]:
    deltas: list[str] = []

    async def on_delta(text: str) -> None:
        deltas.append(text)

    response = asyncio.run(ScriptedProvider().complete(request, on_delta))
    return response, deltas


def failure(request: ModelRequest) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        complete(request)
    return caught.value


def conversation(*contents: str) -> list[Message]:
    """Alternating user/assistant messages, starting with the user."""
    roles = ["user", "assistant"]
    return [Message(role=roles[i % 2], content=c) for i, c in enumerate(contents)]  # type: ignore[misc]


def test_it_gives_a_placeholder_reply_without_a_script() -> None:
    response, _ = complete(make_request())

    assert response.text == "(scripted reply)"
    assert response.stop_reason == "end_turn"
    assert response.model == "scripted-1"


def test_it_picks_the_first_rule_matching_the_first_user_message() -> None:
    script = {
        "replies": [{"text": "default"}],
        "rules": [
            {"if_contains": "weather", "replies": [{"text": "sunny"}]},
            {"if_contains": "WEATHER IN", "replies": [{"text": "too late to match"}]},
        ],
    }

    response, _ = complete(
        make_request(script, [Message(role="user", content="The Weather in Oslo?")])
    )

    assert response.text == "sunny"


def test_it_matches_rules_against_the_first_user_message_only() -> None:
    script = {
        "replies": [{"text": "default"}],
        "rules": [{"if_contains": "weather", "replies": [{"text": "sunny"}]}],
    }

    response, _ = complete(
        make_request(script, conversation("Hello", "Hi!", "what about the weather?"))
    )

    assert response.text == "default"


def test_it_indexes_replies_by_the_number_of_assistant_turns() -> None:
    script = {"replies": [{"text": "first"}, {"text": "second"}, {"text": "last"}]}

    texts = [
        complete(make_request(script, conversation(*history)))[0].text
        for history in [
            ("q",),
            ("q", "a", "q"),
            ("q", "a", "q", "a", "q"),
            ("q", "a", "q", "a", "q", "a", "q"),
        ]
    ]

    assert texts == ["first", "second", "last", "last"]


def test_it_fails_only_the_listed_attempts() -> None:
    script = {"replies": [{"text": "recovered", "error": "flaky upstream", "fail_attempts": [1]}]}

    error = failure(make_request(script, attempt=1))
    response, _ = complete(make_request(script, attempt=2))

    assert str(error) == "flaky upstream"
    assert error.retryable is True
    assert response.text == "recovered"


def test_it_fails_every_attempt_when_no_attempts_are_listed() -> None:
    script = {"replies": [{"error": "model refused", "retryable": False}]}

    errors = [failure(make_request(script, attempt=attempt)) for attempt in (1, 2, 3)]

    assert [(str(e), e.retryable) for e in errors] == [("model refused", False)] * 3


def test_it_waits_delay_ms_before_replying() -> None:
    script = {"replies": [{"text": "slow", "delay_ms": 150}]}

    started = time.monotonic()
    complete(make_request(script))

    assert time.monotonic() - started >= 0.15


def test_it_fills_prompt_and_last_into_the_text() -> None:
    script = {"replies": [{"text": "first={{prompt}} last={{last}} kept={{other}} {prompt}"}]}

    response, _ = complete(make_request(script, conversation("Plan a trip", "Where to?", "Oslo")))

    assert response.text == "first=Plan a trip last=Oslo kept={{other}} {prompt}"


@pytest.mark.parametrize(
    ("script", "field"),
    [
        ({"replies": [{"text": "x", "delay_ms": "soon"}]}, "script.replies.0.delay_ms"),
        ({"replies": [{"txt": "typo"}]}, "script.replies.0.txt"),
        ({"rules": [{"if_contains": "x", "replies": []}]}, "script.rules.0.replies"),
        ({"replies": [{"tool_calls": [{"arguments": {}}]}]}, "script.replies.0.tool_calls.0.name"),
    ],
)
def test_it_rejects_a_malformed_script_naming_the_field(script: dict[str, Any], field: str) -> None:
    error = failure(make_request(script))

    assert error.retryable is False
    assert field in str(error)


def test_it_estimates_usage_deterministically() -> None:
    script = {
        "replies": [{"text": "x" * 17, "tool_calls": [{"name": "search", "arguments": {"q": "a"}}]}]
    }
    request = make_request(script, conversation("u" * 10, "a" * 5, "u" * 6), system="s" * 12)

    response, _ = complete(request)

    assert response.usage.input_tokens == 9  # ceil((12 + 10 + 5 + 6) / 4)
    assert response.usage.output_tokens == 5 + 10  # ceil(17 / 4) + 10 per tool call


def test_it_uses_the_usage_a_reply_declares() -> None:
    script = {"replies": [{"text": "hi", "usage": {"input_tokens": 1000, "output_tokens": 250}}]}

    response, _ = complete(make_request(script))

    assert (response.usage.input_tokens, response.usage.output_tokens) == (1000, 250)


def test_it_numbers_tool_calls_by_turn_and_position() -> None:
    calls = [
        {"name": "search", "arguments": {"q": "a"}},
        {"name": "fetch", "arguments": {"url": "u"}},
    ]
    script = {"replies": [{"text": "first"}, {"text": "", "tool_calls": calls}]}

    response, _ = complete(make_request(script, conversation("q", "a", "q")))

    assert response.tool_calls == [
        ToolCall(id="call_1_0", name="search", arguments={"q": "a"}),
        ToolCall(id="call_1_1", name="fetch", arguments={"url": "u"}),
    ]
    assert response.stop_reason == "tool_use"


def test_it_streams_text_in_chunks_of_at_most_16_characters() -> None:
    text = "The quick brown fox jumps over the lazy dog, twice over."
    response, deltas = complete(make_request({"replies": [{"text": text}]}))

    assert "".join(deltas) == response.text == text
    assert all(0 < len(d) <= 16 for d in deltas)
    assert len(deltas) == 4


def test_it_is_labelled_as_not_a_real_model() -> None:
    labels = dict(provider_choices())

    assert "not a real model" in labels["scripted"]
    assert list(labels) == list(PROVIDERS)


def test_it_rejects_an_unknown_provider_name_listing_the_known_ones() -> None:
    with pytest.raises(ValueError, match="anthropic, openai, scripted"):
        get_provider("gpt-9")

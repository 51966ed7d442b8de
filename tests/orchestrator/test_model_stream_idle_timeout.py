# Found by an outside review (2026-12-07, dependency failures); failed before its fix.
"""MODEL_TIMEOUT_S bounds the wait for each next part of a streamed answer, for both HTTP providers.

The SDKs get the timeout as an httpx timeout, which bounds each socket read, not progress: a
server (or proxy) that sends SSE keep-alives (`: PROCESSING` comments, Anthropic's `ping`
events) and never a part of the answer kept a run streaming for ever, holding its lease, a
worker slot and budget room. Now only a chunk or event the SDK yields resets the deadline: a
stream of keep-alives ends in the providers' retryable "timed out" error (the step retries,
then pauses for review), while a slow answer whose parts keep coming is not cut off.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from asgiref.sync import async_to_sync

from orchestrator.engine.errors import ProviderError
from orchestrator.engine.types import Message, ModelRequest, ModelResponse
from orchestrator.execution import execute_run
from orchestrator.models import Agent, Run, RunEvent
from orchestrator.providers.anthropic import AnthropicProvider
from orchestrator.providers.openai import OpenAIProvider
from tests.conftest import pipeline, start

pytestmark = pytest.mark.usefixtures("outbound_allows_loopback")

KEY_ENV = "AGENTDECK_TEST_STREAM_KEY"
TIMEOUT_S = 2
KEEP_ALIVE_FOR_S = 10.0  # how long the fake keeps a stream alive without an answer (a bound for the test)


def openai_chunk(delta: dict, finish: str | None = None) -> bytes:
    body = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def anthropic_event(name: str, data: dict) -> bytes:
    return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode()


ANTHROPIC_START = anthropic_event("message_start", {"message": {
    "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test", "content": [],
    "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 1}}})
ANTHROPIC_BLOCK = anthropic_event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})


def anthropic_text(text: str) -> bytes:
    return anthropic_event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": text}})


ANTHROPIC_END = b"".join([
    anthropic_event("content_block_stop", {"index": 0}),
    anthropic_event("message_delta", {"delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                      "usage": {"output_tokens": 5}}),
    anthropic_event("message_stop", {})])

Script = Iterator[tuple[float, bytes]]  # (seconds to wait, then bytes to send)


def keep_alives(first: bytes, keep_alive: bytes) -> Script:
    """`first`, then only keep-alives every 0.3 s, for KEEP_ALIVE_FOR_S."""
    yield 0.0, first
    began = time.monotonic()
    while time.monotonic() - began < KEEP_ALIVE_FOR_S:
        yield 0.3, keep_alive


def slow_parts(first: bytes, parts: list[bytes], last: bytes) -> Script:
    """`first`, then each part 0.5 s after the one before (together longer than TIMEOUT_S), then `last`."""
    yield 0.0, first
    for part in parts:
        yield 0.5, part
    yield 0.0, last


class StreamServer:
    """A loopback SSE server playing a fresh `script()` (chunked) to each POST; a context manager."""

    def __init__(self, script: Callable[[], Script]) -> None:
        self.script = script

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                try:
                    for wait, data in outer.script():
                        time.sleep(wait)
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except OSError:  # the client gave up
                    pass
                self.close_connection = True

        outer = self
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> StreamServer:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(autouse=True)
def short_timeout(settings, monkeypatch) -> None:
    settings.MODEL_TIMEOUT_S = TIMEOUT_S
    monkeypatch.setenv(KEY_ENV, "sk-test")


def complete(provider: OpenAIProvider | AnthropicProvider, base_url: str) -> tuple[ModelResponse, float]:
    request = ModelRequest(model="m", system="", messages=[Message(role="user", content="Hi")],
                           options={"base_url": base_url, "api_key_env": KEY_ENV})
    began = time.monotonic()
    response = asyncio.run(provider.complete(request))
    return response, time.monotonic() - began


def timed_out(provider: OpenAIProvider | AnthropicProvider, script: Callable[[], Script],
              path: str = "") -> tuple[ProviderError, float]:
    began = time.monotonic()
    with StreamServer(script) as server, pytest.raises(ProviderError) as caught:
        complete(provider, server.url + path)
    return caught.value, time.monotonic() - began


def test_it_times_out_an_openai_stream_of_keep_alive_comments():
    error, waited = timed_out(OpenAIProvider(), lambda: keep_alives(b": PROCESSING\n\n", b": PROCESSING\n\n"), "/v1")

    assert str(error) == "OpenAI-compatible call timed out (MODEL_TIMEOUT_S=2)" and error.retryable
    assert waited < TIMEOUT_S + 3


def test_it_times_out_an_openai_stream_that_stalls_after_its_first_chunk():
    error, waited = timed_out(OpenAIProvider(), lambda: keep_alives(openai_chunk({"content": "Hel"}), b": PROCESSING\n\n"),
                              "/v1")

    assert str(error) == "OpenAI-compatible call timed out (MODEL_TIMEOUT_S=2)" and waited < TIMEOUT_S + 3


@pytest.mark.parametrize("keep_alive", [anthropic_event("ping", {}), b": PROCESSING\n\n"], ids=["ping", "comment"])
def test_it_times_out_an_anthropic_stream_of_keep_alives(keep_alive):
    error, waited = timed_out(AnthropicProvider(), lambda: keep_alives(ANTHROPIC_START + ANTHROPIC_BLOCK, keep_alive))

    assert str(error) == "Anthropic call timed out (MODEL_TIMEOUT_S=2)" and error.retryable
    assert waited < TIMEOUT_S + 3


def test_it_lets_an_openai_answer_take_longer_than_the_timeout_while_its_chunks_keep_coming():
    parts = [openai_chunk({"content": word}) for word in ("one ", "two ", "three ", "four ", "five ", "six")]
    first, last = openai_chunk({"role": "assistant", "content": ""}), openai_chunk({}, "stop") + b"data: [DONE]\n\n"

    with StreamServer(lambda: slow_parts(first, parts, last)) as server:
        response, took = complete(OpenAIProvider(), server.url + "/v1")

    assert response.text == "one two three four five six" and took > TIMEOUT_S


def test_it_lets_an_anthropic_answer_take_longer_than_the_timeout_while_its_events_keep_coming():
    parts = [anthropic_text(word) for word in ("one ", "two ", "three ", "four ", "five ", "six")]

    with StreamServer(lambda: slow_parts(ANTHROPIC_START + ANTHROPIC_BLOCK, parts, ANTHROPIC_END)) as server:
        response, took = complete(AnthropicProvider(), server.url)

    assert response.text == "one two three four five six" and took > TIMEOUT_S


@pytest.mark.django_db(transaction=True)
def test_a_run_whose_model_only_sends_keep_alives_retries_then_pauses_for_review(team):
    with StreamServer(lambda: keep_alives(b": PROCESSING\n\n", b": PROCESSING\n\n")) as server:
        Agent.objects.create(team=team, name="a", provider="openai", model="m",
                             options={"base_url": server.url + "/v1", "api_key_env": KEY_ENV})
        run = start(pipeline(team, {"steps": [{"kind": "agent", "id": "s", "agent": "a", "prompt": "hi",
                                               "retry": {"max_attempts": 2, "backoff_s": 0}}]}))
        finished = threading.Event()

        def go() -> None:
            try:
                async_to_sync(execute_run)(run.pk)
            finally:
                finished.set()

        threading.Thread(target=go, daemon=True).start()
        ended = finished.wait(KEEP_ALIVE_FOR_S)  # each of the two attempts gives up after TIMEOUT_S
        finished.wait(KEEP_ALIVE_FOR_S)  # (a call that did not give up ends with the fake's stream)

    run = Run.objects.get(pk=run.pk)
    assert ended, f"the model call was still streaming keep-alives after {KEEP_ALIVE_FOR_S}s with MODEL_TIMEOUT_S=2"
    assert run.status == "waiting_review" and "timed out" in (run.review_items.get().context.get("error") or "")
    retried = RunEvent.objects.get(run=run, type="step.retrying")
    assert "OpenAI-compatible call timed out" in retried.data["error"]

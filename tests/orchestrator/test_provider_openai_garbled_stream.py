# Found by an outside review (2026-12-07, dependency failures); failed before its fix.
"""An OpenAI-compatible server that sends one malformed SSE line fails the whole run at once.

What is wrong: `orchestrator/providers/openai.py: _stream` turns only `openai.APIError` into a
`ProviderError`. A `data:` line that is not JSON (a proxy's error page spliced into the stream, a
local server's bug, a truncated line) makes the SDK raise `json.JSONDecodeError` (a ValueError)
while iterating, which escapes the provider untouched. The engine's `_agent` catches only
`ProviderError`/`StepError`/`TimeoutError`, so the step neither retries (its `retry` policy)
nor pauses for review (its `on_failure`): the run crashes and ends `failed`. The Anthropic
provider maps the same case (`ValueError` -> retryable `ProviderError`).

Severity: medium. A transient garbled answer from a model endpoint loses the run instead of
being retried ("every dependency's failure gives a clear error and loses nothing").

(A stream cut off mid-body was already a retryable error: the SDK raises its
APIConnectionError there; the second case keeps it so.)

Correct: an unparseable stream is a retryable `ProviderError` ("returned an unparseable
response"), so the step's second attempt (a good answer) lets the run succeed.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from orchestrator.models import Agent, RunEvent
from tests.conftest import execute, pipeline, start

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("outbound_allows_loopback")]


def _chunk(delta: dict, finish: str | None = None) -> bytes:
    body = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    calls: list[int] = []
    first = "garbled"  # or "truncated": the connection closes before the promised body

    def log_message(self, *args):  # quiet
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.calls.append(1)
        promised = 0
        if len(self.calls) == 1 and self.first == "garbled":  # first answer: a garbled line mid-stream
            payload = _chunk({"role": "assistant", "content": "Hel"}) + b"data: {garbled\n\n"
        elif len(self.calls) == 1:  # first answer: cut off, the rest of the body never comes
            payload = _chunk({"role": "assistant", "content": "Hel"})
            promised = 1000
        else:
            payload = _chunk({"role": "assistant", "content": "Hello"}) + _chunk({}, "stop") + b"data: [DONE]\n\n"
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("content-length", str(len(payload) + promised))
        self.send_header("connection", "close")
        self.end_headers()
        self.wfile.write(payload)


@pytest.mark.parametrize("first", ["garbled", "truncated"])
def test_a_garbled_or_cut_stream_is_retried_not_a_crashed_run(team, monkeypatch, first):
    monkeypatch.setenv("TEST_PROVIDER_KEY", "sk-test")
    monkeypatch.setattr(_Handler, "first", first)
    _Handler.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        Agent.objects.create(team=team, name="a", provider="openai", model="m",
                             options={"base_url": f"http://127.0.0.1:{server.server_port}/v1",
                                      "api_key_env": "TEST_PROVIDER_KEY"})
        spec = {"steps": [{"kind": "agent", "id": "s", "agent": "a", "prompt": "hi",
                           "retry": {"max_attempts": 2, "backoff_s": 0}}]}
        run = start(pipeline(team, spec))
        try:
            execute(run)
        except Exception as exc:  # before the fix: the run "crashed" and execute_run re-raised
            crashed = exc
        else:
            crashed = None
        run.refresh_from_db()
    finally:
        server.shutdown()
        server.server_close()

    assert crashed is None and run.status == "succeeded", (run.status, run.error, repr(crashed))
    assert run.output["result"] == "Hello"
    assert len(_Handler.calls) == 2
    assert RunEvent.objects.filter(run=run, type="step.retrying").count() == 1

"""A loopback HTTP server that speaks OpenAI's chat completions protocol, streaming included.

Tests queue the turns the "model" will play, point the official SDK at `.base_url`, and
assert on `.requests`, which records every body and header the SDK sent:

    with FakeOpenAIServer() as server:
        server.push(text="Hello there", prompt_tokens=12, completion_tokens=3)
        server.push(tool_calls=[{"name": "search", "arguments": {"q": "x"}}])
        server.push(tool_calls=[{"name": "search", "arguments": "{not json"}])  # raw string
        server.push_error(500)

`POST /v1/chat/completions` answers `chat.completion.chunk` SSE lines ending in
`data: [DONE]` when the body asks for `stream` (with a final usage chunk if
`stream_options.include_usage` is set), else one `chat.completion` JSON body. With
nothing queued it answers 500 so a missing `push` fails loudly. Output stops at the body's
`max_tokens`/`max_completion_tokens` (finish reason `length`), as real servers' does.

A turn pushed with `prompt_tokens=None` reports the fake's own count of the request
(`count_tokens`: one token per `chars_per_token` characters of the JSON of messages and
tools; two by default, denser than the usual four-characters estimate).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
}
_CREATED = 1_700_000_000


@dataclass
class ReceivedRequest:
    """One request as the server saw it; header names are lower-case.

    `client_port` tells connections apart: equal ports mean a reused keep-alive connection.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    client_port: int


@dataclass
class Turn:
    """One scripted reply. `text` may be a list to fix exactly how it is split into deltas.

    A tool call's `arguments` may be a dict (sent as JSON) or a raw string (sent as is).
    `send_usage=False` leaves out the usage chunk, as some local servers do.
    """

    text: str | list[str] = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    prompt_tokens: int | None = 12  # None: the fake's own count of the request
    completion_tokens: int = 7
    send_usage: bool = True
    finish_reason: str | None = None
    delay_s: float = 0.0
    status: int = 200
    error_message: str = ""

    @property
    def deltas(self) -> list[str]:
        if isinstance(self.text, list):
            return self.text
        return [self.text[i : i + 5] for i in range(0, len(self.text), 5)]


class FakeOpenAIServer:
    """Serves queued turns on 127.0.0.1 from a daemon thread; use it as a context manager."""

    def __init__(self, chars_per_token: int = 2) -> None:
        self.requests: list[ReceivedRequest] = []
        self.chars_per_token = chars_per_token
        self._turns: deque[Turn] = deque()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.fake = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def base_url(self) -> str:
        """The base URL to give the SDK (it appends `/chat/completions`), like OpenAI's `/v1`."""
        return f"{self.url}/v1"

    def push(
        self,
        text: str | list[str] = "",
        tool_calls: list[dict[str, Any]] | None = None,
        **options: Any,
    ) -> None:
        """Queue a reply: text deltas and/or `{"name", "arguments", "id"?}` tool calls."""
        with self._lock:
            self._turns.append(Turn(text=text, tool_calls=list(tool_calls or []), **options))

    def push_error(self, status: int, message: str = "scripted failure") -> None:
        """Queue an HTTP error status with OpenAI's error body."""
        with self._lock:
            self._turns.append(Turn(status=status, error_message=message))

    def start(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def count_tokens(self, body: dict[str, Any]) -> int:
        """The fake's tokenizer: what `prompt_tokens=None` reports."""
        parts = {key: body[key] for key in ("messages", "tools") if key in body}
        return math.ceil(len(json.dumps(parts)) / self.chars_per_token)

    def _next_turn(self, request: ReceivedRequest) -> Turn | None:
        with self._lock:
            self.requests.append(request)
            return self._turns.popleft() if self._turns else None

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):04d}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: Any

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # the client gave up (a timeout test); nothing to report
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    @property
    def fake(self) -> FakeOpenAIServer:
        return self.server.fake  # type: ignore[no-any-return]

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read `.requests` instead."""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) if length else b"{}")
        headers = {name.lower(): value for name, value in self.headers.items()}
        turn = self.fake._next_turn(
            ReceivedRequest("POST", self.path, headers, body, self.client_address[1])
        )
        if self.path.split("?")[0] != "/v1/chat/completions":
            self._send_error(404, f"no route for {self.path}")
            return
        if turn is None:
            self._send_error(500, "fake server: no turn queued")
            return
        time.sleep(turn.delay_s)
        turn = _as_answered(turn, body, self.fake.count_tokens(body))
        model = body.get("model", "")
        if turn.status >= 400:
            self._send_error(turn.status, turn.error_message)
        elif body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            self._send_stream(self._chunks(turn, model, include_usage=include_usage))
        else:
            self._send_json(200, self._completion(turn, model))

    def _tool_calls(self, turn: Turn) -> list[dict[str, Any]]:
        calls = []
        for call in turn.tool_calls:
            call.setdefault("id", self.fake._next_id("call"))
            arguments = call.get("arguments", {})
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments)
            function = {"name": call["name"], "arguments": arguments}
            calls.append({"id": call["id"], "type": "function", "function": function})
        return calls

    def _usage(self, turn: Turn) -> dict[str, int]:
        return {
            "prompt_tokens": turn.prompt_tokens,
            "completion_tokens": turn.completion_tokens,
            "total_tokens": turn.prompt_tokens + turn.completion_tokens,
        }

    def _completion(self, turn: Turn, model: str) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(turn.deltas) or None,
            "refusal": None,
        }
        if turn.tool_calls:
            message["tool_calls"] = self._tool_calls(turn)
        return {
            "id": self.fake._next_id("chatcmpl"),
            "object": "chat.completion",
            "created": _CREATED,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": _finish_reason(turn),
                    "logprobs": None,
                }
            ],
            "usage": self._usage(turn) if turn.send_usage else None,
        }

    def _chunks(self, turn: Turn, model: str, *, include_usage: bool) -> Iterator[dict[str, Any]]:
        completion_id = self.fake._next_id("chatcmpl")

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            return {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": _CREATED,
                "model": model,
                "system_fingerprint": None,
                "choices": [choice],
            }

        yield chunk({"role": "assistant", "content": ""})
        for piece in turn.deltas:
            yield chunk({"content": piece})
        for index, call in enumerate(self._tool_calls(turn)):
            name = call["function"]["name"]
            yield chunk(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call["id"],
                            "type": "function",
                            "function": {"name": name, "arguments": ""},
                        }
                    ]
                }
            )
            arguments = call["function"]["arguments"]
            half = len(arguments) // 2
            for piece in (arguments[:half], arguments[half:]):
                yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        yield chunk({}, _finish_reason(turn))
        if include_usage and turn.send_usage:
            yield {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": _CREATED,
                "model": model,
                "choices": [],
                "usage": self._usage(turn),
            }

    def _send_stream(self, chunks: Iterator[dict[str, Any]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        lines = (f"data: {json.dumps(data)}\n\n" for data in chunks)
        for line in itertools.chain(lines, ["data: [DONE]\n\n"]):
            payload = line.encode()
            self.wfile.write(f"{len(payload):X}\r\n".encode() + payload + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _send_error(self, status: int, message: str) -> None:
        error_type, code = _ERROR_TYPES.get(status, ("server_error", None))
        self._send_json(
            status, {"error": {"message": message, "type": error_type, "param": None, "code": code}}
        )

    def _send_json(self, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-request-id", self.fake._next_id("req"))
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()


def _as_answered(turn: Turn, body: dict[str, Any], counted: int) -> Turn:
    """The turn as the model plays it for this request: counted prompt, output cut at the limit."""
    answered = dataclasses.replace(turn, prompt_tokens=counted if turn.prompt_tokens is None else turn.prompt_tokens)
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if isinstance(limit, int) and answered.completion_tokens > limit:
        answered.completion_tokens = limit
        answered.finish_reason = "length"
    return answered


def _finish_reason(turn: Turn) -> str:
    return turn.finish_reason or ("tool_calls" if turn.tool_calls else "stop")

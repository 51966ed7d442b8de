"""A loopback HTTP server that speaks Anthropic's Messages API, streaming included.

Tests queue the turns the "model" will play, point the official SDK at `.url`, and
assert on `.requests`, which records every body and header the SDK sent:

    with FakeAnthropicServer() as server:
        server.push(text="Hello there", input_tokens=12, output_tokens=3)
        server.push(tool_calls=[{"name": "search", "input": {"q": "x"}}])
        server.push_error(529)                       # an HTTP error with an error body
        server.push_error(200, error_type="overloaded_error", mid_stream=True)

`POST /v1/messages` answers with the SSE event sequence the API sends
(message_start, content_block_start/delta/stop, message_delta, message_stop) when the
body asks for `stream`, else with a Message JSON body. With nothing queued it answers
500 so a missing `push` fails loudly. Output stops at the body's `max_tokens` (stop reason
`max_tokens`), as the API's does.

`POST /v1/messages/count_tokens` answers `{"input_tokens": n}` by the fake's own tokenizer
(`count_tokens`: one token per `chars_per_token` characters of the JSON of system, tools and
messages; two by default, denser than the usual four-characters estimate) and needs no turn;
those requests go to `.count_requests`. A turn pushed with `input_tokens=None` reports that
same count as its usage.
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
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


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
    """One scripted reply. `text` may be a list to fix exactly how it is split into deltas."""

    text: str | list[str] = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    input_tokens: int | None = 12  # None: the fake's own count of the request
    output_tokens: int = 7
    stop_reason: str | None = None
    delay_s: float = 0.0
    status: int = 200
    error_type: str | None = None
    error_message: str = ""
    mid_stream: bool = False

    @property
    def deltas(self) -> list[str]:
        if isinstance(self.text, list):
            return self.text
        return [self.text[i : i + 5] for i in range(0, len(self.text), 5)]


class FakeAnthropicServer:
    """Serves queued turns on 127.0.0.1 from a daemon thread; use it as a context manager."""

    def __init__(self, chars_per_token: int = 2) -> None:
        self.requests: list[ReceivedRequest] = []
        self.count_requests: list[ReceivedRequest] = []
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
        """The base URL to give the SDK (it appends `/v1/messages`)."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def push(
        self,
        text: str | list[str] = "",
        tool_calls: list[dict[str, Any]] | None = None,
        **options: Any,
    ) -> None:
        """Queue a reply: text deltas and/or `{"name", "input", "id"?}` tool calls."""
        with self._lock:
            self._turns.append(Turn(text=text, tool_calls=list(tool_calls or []), **options))

    def push_error(
        self,
        status: int,
        message: str = "scripted failure",
        *,
        error_type: str | None = None,
        mid_stream: bool = False,
    ) -> None:
        """Queue an error: an HTTP status with an error body, or an `error` event mid-stream."""
        kind = error_type or _ERROR_TYPES.get(status, "api_error")
        turn = Turn(status=status, error_type=kind, error_message=message, mid_stream=mid_stream)
        with self._lock:
            self._turns.append(turn)

    def start(self) -> FakeAnthropicServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeAnthropicServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def count_tokens(self, body: dict[str, Any]) -> int:
        """The fake's tokenizer: what `count_tokens` answers and `input_tokens=None` reports."""
        parts = {key: body[key] for key in ("system", "tools", "messages") if key in body}
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
    def fake(self) -> FakeAnthropicServer:
        return self.server.fake  # type: ignore[no-any-return]

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read `.requests` instead."""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        body = json.loads(raw or b"{}")
        headers = {name.lower(): value for name, value in self.headers.items()}
        received = ReceivedRequest("POST", self.path, headers, body, self.client_address[1])
        if self.path.split("?")[0] == "/v1/messages/count_tokens":
            with self.fake._lock:
                self.fake.count_requests.append(received)
            self._send_json(200, {"input_tokens": self.fake.count_tokens(body)})
            return
        turn = self.fake._next_turn(received)
        if self.path.split("?")[0] != "/v1/messages":
            self._send_error(404, "not_found_error", f"no route for {self.path}")
            return
        if turn is None:
            self._send_error(500, "api_error", "fake server: no turn queued")
            return
        time.sleep(turn.delay_s)
        turn = _as_answered(turn, body, self.fake.count_tokens(body))
        if turn.status >= 400:
            self._send_error(turn.status, turn.error_type or "api_error", turn.error_message)
        elif body.get("stream"):
            self._send_stream(turn, body.get("model", ""))
        else:
            self._send_json(200, self._message(turn, body.get("model", ""), final=True))

    def _message(self, turn: Turn, model: str, *, final: bool) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if final:
            if turn.deltas:
                content.append({"type": "text", "text": "".join(turn.deltas)})
            content.extend(
                self._tool_block(call, call.get("input", {})) for call in turn.tool_calls
            )
        return {
            "id": self.fake._next_id("msg"),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": _stop_reason(turn) if final else None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": turn.input_tokens,
                "output_tokens": turn.output_tokens if final else 1,
            },
        }

    def _tool_block(self, call: dict[str, Any], tool_input: dict[str, Any]) -> dict[str, Any]:
        call.setdefault("id", self.fake._next_id("toolu"))
        return {"type": "tool_use", "id": call["id"], "name": call["name"], "input": tool_input}

    def _events(self, turn: Turn, model: str) -> Iterator[tuple[str, dict[str, Any]]]:
        yield (
            "message_start",
            {"type": "message_start", "message": self._message(turn, model, final=False)},
        )
        if turn.mid_stream:
            error = {"type": turn.error_type, "message": turn.error_message}
            yield "error", {"type": "error", "error": error}
            return
        index = 0
        if turn.deltas:
            yield (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": ""},
                },
            )
            yield "ping", {"type": "ping"}
            for piece in turn.deltas:
                yield (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "text_delta", "text": piece},
                    },
                )
            yield "content_block_stop", {"type": "content_block_stop", "index": index}
            index += 1
        for call in turn.tool_calls:
            block = self._tool_block(call, {})
            yield (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": block},
            )
            arguments = json.dumps(call.get("input", {}))
            half = len(arguments) // 2
            for piece in (arguments[:half], arguments[half:]):
                yield (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": piece},
                    },
                )
            yield "content_block_stop", {"type": "content_block_stop", "index": index}
            index += 1
        yield (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": _stop_reason(turn), "stop_sequence": None},
                "usage": {"output_tokens": turn.output_tokens},
            },
        )
        yield "message_stop", {"type": "message_stop"}

    def _send_stream(self, turn: Turn, model: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("request-id", self.fake._next_id("req"))
        self.end_headers()
        for name, data in self._events(turn, model):
            payload = f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
            self.wfile.write(f"{len(payload):X}\r\n".encode() + payload + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _send_error(self, status: int, error_type: str, message: str) -> None:
        request_id = self.fake._next_id("req")
        body = {
            "type": "error",
            "error": {"type": error_type, "message": message},
            "request_id": request_id,
        }
        self._send_json(status, body)

    def _send_json(self, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("request-id", self.fake._next_id("req"))
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()


def _as_answered(turn: Turn, body: dict[str, Any], counted: int) -> Turn:
    """The turn as the model plays it for this request: counted input, output cut at max_tokens."""
    answered = dataclasses.replace(turn, input_tokens=counted if turn.input_tokens is None else turn.input_tokens)
    limit = body.get("max_tokens")
    if isinstance(limit, int) and answered.output_tokens > limit:
        answered.output_tokens = limit
        answered.stop_reason = "max_tokens"
    return answered


def _stop_reason(turn: Turn) -> str:
    return turn.stop_reason or ("tool_use" if turn.tool_calls else "end_turn")

"""The transports behind the three upstream kinds, chosen by name from `TRANSPORTS`.

Each opener is an async context manager that yields an `OpenedTransport`: an SDK
`Transport` ready to hand to `mcp.Client`, plus a way to learn the child pid (stdio)
and an event set when the transport's read side ends (the server went away). HTTP and
SSE are the SDK's transports; stdio is our `upstream.stdio.StdioChannel`, which also
gives the session a short path for tool calls. Closing
the context releases what the opener acquired (the stderr pipe, the HTTP client); the
SDK transport itself is closed by the `Client` that entered it.

Remote (http, sse) servers connect through the outbound guard (`mcpgateway.outbound`): every
connection resolves and checks the host again, so a URL that passed the save-time check
cannot be re-pointed at a private address through DNS.

stdio children get a minimal environment (PATH, HOME, LANG, merged under the
configured env, over the SDK's own short safe list) and their stderr is forwarded
line by line to the `mcpgateway.upstream.stderr` logger, never to the terminal.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TextIO

import anyio
import httpx2
from mcp.client import Transport
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from mcpgateway.outbound import guarded_async_client
from mcpgateway.upstream.config import UpstreamConfig
from mcpgateway.upstream.stdio import StdioChannel

stderr_logger = logging.getLogger("mcpgateway.upstream.stderr")

SAFE_ENV_KEYS = ("PATH", "HOME", "LANG")
_MAX_STDERR_LINE = 4000
_HTTP_READ_TIMEOUT_S = 300.0


@dataclass
class OpenedTransport:
    """An SDK transport for one connection attempt, and what we watch on it."""

    transport: Transport
    closed: asyncio.Event
    find_pid: Callable[[], int | None] | None = None
    channel: StdioChannel | None = None  # stdio only: the short path for tool calls


class _WatchedReadStream:
    """Wraps a transport's read stream to notice when it ends (EOF or closed).

    The dispatcher reads until the stream ends, then fails every pending request with
    CONNECTION_CLOSED; this wrapper additionally sets `closed` so the supervisor learns
    of a dead server at once instead of at the next health probe.
    """

    def __init__(self, inner: Any, closed: asyncio.Event) -> None:
        self._inner = inner
        self._closed = closed

    @property
    def last_context(self) -> Any:
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> Any:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._closed.set()
            raise

    def __aiter__(self) -> _WatchedReadStream:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        self._closed.set()
        await self._inner.aclose()

    async def __aenter__(self) -> _WatchedReadStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class _WatchedTransport:
    """An SDK transport whose read stream is a `_WatchedReadStream`."""

    def __init__(self, inner: Transport, closed: asyncio.Event) -> None:
        self._inner = inner
        self._closed = closed

    async def __aenter__(self) -> tuple[Any, Any]:
        read_stream, write_stream = await self._inner.__aenter__()
        return _WatchedReadStream(read_stream, self._closed), write_stream

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        self._closed.set()
        return await self._inner.__aexit__(exc_type, exc, tb)


class _StderrToLog(asyncio.Protocol):
    """Forwards a child's stderr to the log, one record per line."""

    def __init__(self, server: str) -> None:
        self._server = server
        self._buffer = b""

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        if len(self._buffer) > _MAX_STDERR_LINE:
            lines.append(self._buffer)
            self._buffer = b""
        for line in lines:
            self._emit(line)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._buffer:
            self._emit(self._buffer)
            self._buffer = b""

    def _emit(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace").rstrip()
        if text:
            stderr_logger.info("[%s] %s", self._server, text[:_MAX_STDERR_LINE])


@asynccontextmanager
async def _stderr_pipe(server: str) -> AsyncIterator[TextIO]:
    """A pipe whose write end becomes the child's stderr; the read end feeds the log."""
    read_fd, write_fd = os.pipe()
    reader = os.fdopen(read_fd, "rb", buffering=0)
    writer = os.fdopen(write_fd, "w")
    try:
        loop = asyncio.get_running_loop()
        pipe_transport, _ = await loop.connect_read_pipe(lambda: _StderrToLog(server), reader)
    except BaseException:
        reader.close()
        writer.close()
        raise
    try:
        yield writer
    finally:
        writer.close()
        pipe_transport.close()


def stdio_environment(config: UpstreamConfig) -> dict[str, str]:
    """The child's environment: a few safe variables, then the configured ones."""
    env = {key: os.environ[key] for key in SAFE_ENV_KEYS if key in os.environ}
    env.update(config.env)
    return env


@asynccontextmanager
async def open_stdio(config: UpstreamConfig) -> AsyncIterator[OpenedTransport]:
    """Spawn the server through our own stdio channel (`upstream.stdio`) when the client enters
    it; the channel is also the session's short path for tool calls."""
    closed = asyncio.Event()
    async with _stderr_pipe(config.name) as errlog:
        channel = StdioChannel(config.name, config.command, list(config.args),
                               env=stdio_environment(config), cwd=config.cwd, errlog=errlog)
        yield OpenedTransport(
            transport=_WatchedTransport(channel, closed),
            closed=closed,
            find_pid=lambda: channel.pid,
            channel=channel,
        )


def _http_client(config: UpstreamConfig) -> httpx2.AsyncClient:
    # The read timeout bounds idle streams (a listen stream is re-opened when it trips);
    # call deadlines are enforced by the session, so never cut a long call short here.
    read_timeout = max(_HTTP_READ_TIMEOUT_S, config.call_timeout_s + 5)
    timeout = httpx2.Timeout(config.connect_timeout_s, read=read_timeout)
    return guarded_async_client(headers=dict(config.headers), timeout=timeout,
                                event_hooks={"request": [_traceparent_header]})


def _guarded_sse_client(headers: dict[str, str] | None = None, timeout: httpx2.Timeout | None = None,
                        auth: httpx2.Auth | None = None) -> httpx2.AsyncClient:
    """The SDK's SSE client factory, behind the outbound guard."""
    return guarded_async_client(headers=headers, timeout=timeout, auth=auth)


async def _traceparent_header(request: httpx2.Request) -> None:
    """Lift a request's `_meta.traceparent` (put there by dispatch when tracing is on) into the
    W3C `traceparent` header, so HTTP upstreams and proxies continue the trace."""
    try:
        body = request.content
    except httpx2.RequestNotRead:  # a streamed body: nothing to look into
        return
    if not body or b'"traceparent"' not in body:
        return
    try:
        meta = json.loads(body).get("params", {}).get("_meta", {})
    except (ValueError, AttributeError):
        return
    for key in ("traceparent", "tracestate"):
        if isinstance(meta.get(key), str):
            request.headers[key] = meta[key]


@asynccontextmanager
async def open_http(config: UpstreamConfig) -> AsyncIterator[OpenedTransport]:
    """Streamable HTTP through the SDK; headers (e.g. Authorization) ride on our httpx2 client."""
    closed = asyncio.Event()
    async with AsyncExitStack() as stack:
        client = await stack.enter_async_context(_http_client(config))
        inner = streamable_http_client(config.url, http_client=client)
        yield OpenedTransport(transport=_WatchedTransport(inner, closed), closed=closed)


@asynccontextmanager
async def open_sse(config: UpstreamConfig) -> AsyncIterator[OpenedTransport]:
    """The legacy HTTP+SSE transport through the SDK."""
    closed = asyncio.Event()
    inner = sse_client(
        config.url,
        headers=dict(config.headers),
        timeout=config.connect_timeout_s,
        sse_read_timeout=max(_HTTP_READ_TIMEOUT_S, config.call_timeout_s + 5),
        httpx_client_factory=_guarded_sse_client,
    )
    yield OpenedTransport(transport=_WatchedTransport(inner, closed), closed=closed)


TRANSPORTS: dict[str, Callable[[UpstreamConfig], AbstractAsyncContextManager[OpenedTransport]]] = {
    "stdio": open_stdio,
    "http": open_http,
    "sse": open_sse,
}

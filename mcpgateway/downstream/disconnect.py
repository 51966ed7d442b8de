"""A caller that hangs up stops its tool call.

A `tools/call` may wait minutes (for a human approval). Under uvicorn nothing cancels the
request when its client disconnects, and after the body neither the lean path nor the SDK's
JSON-response transport reads `receive` again, so nobody saw `http.disconnect`: the approval
stayed pending for the whole wait, and approving it made the call for a client that was gone
(daphne cancels the request only some 10 s after the client left). In the 2025-11-25 era
the call does not even run in the request's task but in its session's, so cancelling the
request would not have stopped it.

`DisconnectWatch` reads `receive` after the body in one task per call (no polling) and, on
`http.disconnect`, cancels the tool calls running under `guard` — in whichever task they
run. Dispatch's cancellation branch then closes the approval ("the caller stopped waiting")
and audits the call; `guard` turns that cancellation into `CallerGone`, and only that one
(a server shutting down still cancels as before).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from starlette.types import Message, Receive

T = TypeVar("T")

DISCONNECT_SCOPE_KEY = "agentdeck.disconnect"
"""ASGI scope key of the request's `DisconnectWatch` (the SDK path's handlers read it there)."""


class CallerGone(Exception):
    """The HTTP client of a call disconnected; the call was cancelled."""


class DisconnectWatch:
    """Watches one request's `receive` once its body is read; cancels the guarded calls on disconnect."""

    __slots__ = ("_calls", "_receive", "_task", "gone")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._task: asyncio.Task[Message | None] | None = None
        self._calls: set[asyncio.Task[Any]] = set()
        self.gone = False

    def start(self) -> None:
        """Start watching (call once the whole body was received)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    def stop(self) -> None:
        """Stop watching (the request is answered, or over)."""
        task = self._task
        if task is not None and not task.done():
            task.cancel()

    async def _watch(self) -> Message | None:
        try:
            while True:
                message = await self._receive()
                if message.get("type") == "http.disconnect":
                    self.gone = True
                    for call in list(self._calls):
                        call.cancel()
                    return message
        except asyncio.CancelledError:
            raise
        except Exception:  # a server whose `receive` fails after the response: nothing more to watch
            return None

    async def receive(self) -> Message:
        """`receive` for whoever reads on after the body while the watch runs (the SDK path):
        the watch's own reading, so the real `receive` has one reader at a time."""
        task = self._task
        if task is None:
            return await self._receive()
        message = await asyncio.shield(task) if not task.done() else (None if task.cancelled() else task.result())
        return message if message is not None else await self._receive()

    async def guard(self, call: Awaitable[T]) -> T:
        """Await `call` in the current task, cancelled if the client disconnects meanwhile
        (`CallerGone`); any other cancellation passes through untouched."""
        if self.gone:
            if asyncio.iscoroutine(call):
                call.close()
            raise CallerGone
        task = asyncio.current_task()
        assert task is not None
        self._calls.add(task)
        try:
            result = await call
        except asyncio.CancelledError:
            if self.gone and task.uncancel() == 0:
                raise CallerGone from None
            raise
        finally:
            self._calls.discard(task)
        if self.gone and task.cancelling():
            task.uncancel()  # (the call swallowed the cancel and answered: its answer stands)
        return result


class WatchAfterBody:
    """A `receive` for the SDK path: hands the body through and, once it is whole, starts a
    `DisconnectWatch` if the body may hold a `tools/call` (other requests do not wait long)."""

    __slots__ = ("_read", "_receive", "_tail", "_wanted", "watch")

    MARK = b"tools/call"

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._read = False
        self._tail = b""
        self._wanted = False
        self.watch = DisconnectWatch(receive)

    async def __call__(self) -> Message:
        if self._read:
            return await self.watch.receive()
        message = await self._receive()
        if message.get("type") != "http.request":
            self._read = True
            return message
        chunk = message.get("body", b"")
        if not self._wanted and chunk:
            seen = self._tail + chunk
            self._wanted = self.MARK in seen
            self._tail = seen[-(len(self.MARK) - 1):]
        if not message.get("more_body", False):
            self._read = True
            if self._wanted:
                self.watch.start()
        return message

"""The tool calls in flight on an event loop, and a gate that stops new ones at a warm shutdown.

Cancelling a run while its tool call is at the upstream turns the call into one that "may
have run": on resume the run pauses for a human (unless the tool is safe to repeat). So at a
warm shutdown the worker pool (`worker_pool.hand_back_all`) closes the gate of its loop, so
no tool call starts any more there (a run reaching one waits in front of it, its call not
made; it makes the call when it resumes elsewhere), and waits up to
`AGENTDECK_SHUTDOWN_GRACE_S` for the calls already at an upstream to end before it cancels its
runs. A run that reaches a closed gate is handed back at once (`stop_run`), or as soon as its
own calls in flight have ended: waiting there would spend its step's timeout, and a step that
timed out because of a shutdown burns an attempt or pauses for a human. Everything here runs
on the loop's thread.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from mcpgateway.types import Principal, Toolbox, ToolInvocation, ToolResult, ToolSpec

# The run a tool call belongs to: its task in the worker pool, set where the run starts (a
# branch's task inherits it); None where runs are not executed by the pool.
current_run: ContextVar[asyncio.Task[Any] | None] = ContextVar("agentdeck_tool_gate_run", default=None)


class ToolGate:
    """One loop's tool calls: how many are at an upstream, and whether new ones may start."""

    def __init__(self) -> None:
        self.active = 0
        self._open = asyncio.Event()
        self._open.set()
        self._idle = asyncio.Event()
        self._idle.set()
        # Hands a run back (cancels its task); set by the pool when it closes the gate.
        self.stop_run: Callable[[asyncio.Task[Any]], None] | None = None
        self._in_flight: dict[asyncio.Task[Any], int] = {}  # each run's calls at an upstream
        self._held: set[asyncio.Task[Any]] = set()  # runs at the closed gate until their calls end

    @property
    def closed(self) -> bool:
        return not self._open.is_set()

    def close(self) -> None:
        """No tool call starts from now on (those waiting start if the gate opens again)."""
        self._open.clear()

    def open(self) -> None:
        self._open.set()

    async def idle(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds until no tool call is in flight; whether none is."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            pass
        return self.active == 0

    async def call(self, toolbox: Toolbox, invocation: ToolInvocation) -> ToolResult:
        run = current_run.get()
        if not self._open.is_set() and run is not None:
            if self._in_flight.get(run):
                self._held.add(run)  # its own calls at an upstream end first
            else:
                self._stop(run)
        await self._open.wait()  # a closed gate: wait (to be cancelled) before the call is made
        self.active += 1
        self._idle.clear()
        if run is not None:
            self._in_flight[run] = self._in_flight.get(run, 0) + 1
        try:
            return await toolbox.call_tool(invocation)
        finally:
            self.active -= 1
            if self.active == 0:
                self._idle.set()
            if run is not None:
                left = self._in_flight.pop(run) - 1
                if left:
                    self._in_flight[run] = left
                elif run in self._held and not self._open.is_set():
                    self._stop(run)

    def _stop(self, run: asyncio.Task[Any]) -> None:
        self._held.discard(run)
        if self.stop_run is not None:
            self.stop_run(run)


_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ToolGate] = weakref.WeakKeyDictionary()


def gate(loop: asyncio.AbstractEventLoop | None = None) -> ToolGate:
    """The gate of `loop` (default: the running loop). Call it on that loop's thread."""
    loop = loop or asyncio.get_running_loop()
    found = _gates.get(loop)
    if found is None:
        found = _gates[loop] = ToolGate()
    return found


class GatedToolbox:
    """A toolbox whose calls pass the running loop's gate."""

    def __init__(self, inner: Toolbox):
        self.inner = inner

    async def list_tools(self, principal: Principal) -> list[ToolSpec]:
        return await self.inner.list_tools(principal)

    async def call_tool(self, invocation: ToolInvocation) -> ToolResult:
        return await gate().call(self.inner, invocation)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

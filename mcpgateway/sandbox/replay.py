"""The sandbox honours idempotency keys: a call repeated with the same key gets the first result.

The gateway sends each run call's key in `_meta` (`mcpgateway.idempotency`). A repeat of a
key (a resume after a crash of the caller, a reviewer's "call again") waits for the first
call if it is still running and returns its result instead of running the code again.
Results are kept in this process's memory (the most recent `capacity` keys, per session):
a repeat that reaches a restarted sandbox server runs again. Failures are not kept, so a
call that raised may be tried again.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


class Replays:
    """First results by (session, idempotency key), bounded, for one server process."""

    def __init__(self, capacity: int = 2000) -> None:
        self.capacity = capacity
        self._done: OrderedDict[tuple[str, str, str], Any] = OrderedDict()
        self._running: dict[tuple[str, str, str], asyncio.Lock] = {}

    async def once(self, session: str, tool: str, key: str, run: Callable[[], Awaitable[T]]) -> T:
        """`run()`, unless this session already ran `tool` under `key`: then its first result."""
        if not key:
            return await run()
        slot = (session, tool, key)
        lock = self._running.setdefault(slot, asyncio.Lock())
        async with lock:
            if slot in self._done:
                self._done.move_to_end(slot)
                return self._done[slot]
            result = await run()
            self._done[slot] = result
            while len(self._done) > self.capacity:
                self._done.popitem(last=False)
        if not lock.locked():
            self._running.pop(slot, None)
        return result

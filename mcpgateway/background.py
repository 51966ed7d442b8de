"""The process's background event loop: upstream MCP sessions and inline runs live here.

It runs on its own daemon thread, so sync code (views, commands, Celery tasks) and other
event loops can hand it work; in the web process it is the server's own loop (`adopt`). `on_background` awaits a coroutine on it from
any loop — directly when already there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


def background_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="agentdeck-background", daemon=True).start()
            _loop = loop
        return _loop


def adopt(loop: asyncio.AbstractEventLoop) -> bool:
    """Make the web server's own loop the background loop, before anything started one.

    Called by the web process's ASGI module (config/asgi.py) with the loop its server runs:
    the gateway's upstream sessions then live on the loop that serves `/mcp`, and a tool call
    awaits them directly instead of handing off to another thread's loop and back. False
    (nothing changed) when a separate background loop already exists.
    """
    global _loop
    with _lock:
        if _loop is not None and not _loop.is_closed():
            return _loop is loop
        _loop = loop
        return True


_exit_started = threading.Event()
# threading's exit hooks run when the interpreter's exit starts, before it joins the remaining
# threads (concurrent.futures stops taking work in one of them).
threading._register_atexit(_exit_started.set)  # type: ignore[attr-defined]


def refused_work(exc: BaseException) -> str | None:
    """Why, if `exc` is a thread pool refusing new work, a periodic task on this loop cannot go
    on: the interpreter's exit has started (every pool refuses from then on, while the exit may
    wait a long time for other threads), or the pool it hands work to was shut down. Such a task
    should stop with one line, not log the same traceback every round. None for anything else."""
    if not (isinstance(exc, RuntimeError) and str(exc).startswith("cannot schedule new futures")):
        return None
    return "the process is exiting" if _exit_started.is_set() else f"its thread pool refuses work ({exc})"


def submit(coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    """Schedule `coro` on the background loop from any thread, in a fresh context.

    The task must not inherit the caller's context variables: a web request's asgiref
    context would bind the task's `sync_to_async` calls to that request's thread, which is
    gone by the time they run.
    """
    return contextvars.Context().run(asyncio.run_coroutine_threadsafe, coro, background_loop())


async def on_background(coro: Coroutine[Any, Any, T]) -> T:
    """Await `coro` on the background loop, whichever loop the caller is on."""
    loop = background_loop()
    try:
        current = asyncio.get_running_loop()
    except RuntimeError:
        current = None
    if current is loop:
        return await coro
    return await asyncio.wrap_future(submit(coro))

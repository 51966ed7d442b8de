"""The web process exits after a shutdown, even when a request was cut off mid-way.

Under daphne, a request is served by Django's sync middleware on a worker thread that waits,
through `async_to_sync`, for the async part of the handler on the server's event loop. When
the server stops (SIGTERM) while such a request is in flight, it cancels the request and
stops its loop, so that thread waits for good; the interpreter's exit joins it, and the
process hangs until it is killed — without handing back the runs it held or committing its
queued audit rows (both exit handlers), which are what a graceful stop is for.

`install()` arms a watchdog when the interpreter starts to exit: if the process is still
there `AGENTDECK_WEB_EXIT_GRACE_S` later, it names the threads it waited for, runs the exit
handlers (bounded by `EXIT_HANDLERS_S`) and ends the process.
"""

from __future__ import annotations

import atexit
import concurrent.futures.thread  # noqa: F401  its exit hook (the join that hangs) registers first, so ours runs before it
import logging
import os
import sys
import threading
import time

log = logging.getLogger("agentdeck.exit")
EXIT_HANDLERS_S = 15.0
_exiting = threading.Event()
_installed = False


def served_by_a_server_command() -> bool:
    """This process is the `daphne` or `uvicorn` command serving the app — not a test or a
    script that imports it (their exit codes are theirs to keep)."""
    return "daphne.cli" in sys.modules or os.path.basename(sys.argv[0] if sys.argv else "") in ("daphne", "uvicorn")


def install(grace_s: float) -> None:
    """Arm the watchdog for this process (idempotent); only in a server command, whose exit
    after a shutdown is 0 anyway."""
    global _installed
    if _installed or not served_by_a_server_command():
        return
    _installed = True
    # threading's exit hooks run before it joins the remaining threads, the last registered first.
    threading._register_atexit(_exiting.set)  # type: ignore[attr-defined]
    threading.Thread(target=_watch, args=(grace_s,), name="agentdeck-exit-watchdog", daemon=True).start()


def _watch(grace_s: float) -> None:
    _exiting.wait()
    time.sleep(grace_s)  # a process that exits meanwhile ends this daemon thread with it
    busy = sorted(t.name for t in threading.enumerate()
                  if not t.daemon and t is not threading.main_thread() and t is not threading.current_thread())
    log.warning("still not exited %.0f s after the shutdown began: waiting for %s (a request cut off mid-way); "
                "running the exit handlers and ending the process", grace_s, ", ".join(busy) or "the main thread")
    handlers = threading.Thread(target=atexit._run_exitfuncs, name="agentdeck-exit-handlers", daemon=True)
    handlers.start()
    handlers.join(EXIT_HANDLERS_S)
    if handlers.is_alive():
        log.error("the exit handlers did not finish within %.0f s", EXIT_HANDLERS_S)
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except Exception:
            pass  # a log handler's failure must not keep the process alive
    os._exit(0)


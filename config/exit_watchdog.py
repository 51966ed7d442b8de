"""The web process exits after a shutdown, even when a request was cut off mid-way.

Under daphne, a request is served by Django's sync middleware on a worker thread that waits,
through `async_to_sync`, for the async part of the handler on the server's event loop. When
the server stops (SIGTERM) while such a request is in flight, it cancels the request and
stops its loop, so that thread waits for good; the interpreter's exit joins it, and the
process hangs until it is killed — without handing back the runs it held or committing its
queued audit rows (both exit handlers), which are what a graceful stop is for.

`install()` arms a watchdog when the interpreter starts to exit: if `AGENTDECK_WEB_EXIT_GRACE_S`
later the main thread is still in that join (threading's `_shutdown`, which comes before the
exit handlers), it names the threads it waited for, runs the exit handlers (bounded by
`EXIT_HANDLERS_S`; they have not run yet, and the main thread never reaches them) and ends the
process with the status it was exiting with. An exit that is merely slow in its exit
handlers is left alone.
"""

from __future__ import annotations

import atexit
import concurrent.futures.thread  # noqa: F401  its exit hook (the join that hangs) registers first, so ours runs before it
import logging
import os
import sys
import threading
import time
from pathlib import Path

log = logging.getLogger("agentdeck.exit")
EXIT_HANDLERS_S = 15.0
_exiting = threading.Event()
_installed = False
_status = 0  # what the process was exiting with (sys.exit's code; 1 after an uncaught exception)


SERVERS = ("daphne", "uvicorn")


def served_by_a_server_command() -> bool:
    """This process is the `daphne` or `uvicorn` command (or `python -m` either) serving the
    app — not a test or a script that imports it."""
    program = Path(sys.argv[0] if sys.argv else "")
    return ("daphne.cli" in sys.modules or program.name in SERVERS
            or (program.name == "__main__.py" and program.parent.name in SERVERS))


def install(grace_s: float) -> None:
    """Arm the watchdog for this process (idempotent); only in a server command."""
    global _installed
    if _installed or not served_by_a_server_command():
        return
    _installed = True
    _record_exit_status()
    # threading's exit hooks run before it joins the remaining threads, the last registered first.
    threading._register_atexit(_exiting.set)  # type: ignore[attr-defined]
    threading.Thread(target=_watch, args=(grace_s,), name="agentdeck-exit-watchdog", daemon=True).start()


def _record_exit_status() -> None:
    """Keep the status the process is exiting with, for an exit the watchdog has to end."""
    exit_, excepthook = sys.exit, sys.excepthook

    def recording_exit(status: object = None) -> None:
        global _status
        _status = 0 if status is None else status if isinstance(status, int) else 1
        exit_(status)

    def recording_excepthook(*args: object) -> None:
        global _status
        _status = 1
        excepthook(*args)

    sys.exit, sys.excepthook = recording_exit, recording_excepthook


def _in_thread_join(thread: threading.Thread) -> bool:
    """Whether `thread` is inside threading's `_shutdown` (the join before the exit handlers)."""
    frame = sys._current_frames().get(thread.ident or -1)
    while frame is not None:
        if frame.f_code is threading._shutdown.__code__:  # type: ignore[attr-defined]
            return True
        frame = frame.f_back
    return False


def _watch(grace_s: float) -> None:
    _exiting.wait()
    time.sleep(grace_s)  # a process that exits meanwhile ends this daemon thread with it
    if not _in_thread_join(threading.main_thread()):
        return  # past the join: the exit handlers are running (slowly), and not ours to run again
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
    os._exit(_status)


"""config/exit_watchdog.py: a server process whose exit waits on a thread that never ends
(under daphne, a request cut off by the shutdown: its sync-middleware thread waits for good on
the stopped loop, and the interpreter's exit joins it) still ends, after its exit handlers."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import atexit, concurrent.futures, logging, sys, threading
sys.argv[0] = {argv0!r}  # as the `daphne` command's process, or not
logging.basicConfig(level=logging.INFO, format="%(message)s")
from config import exit_watchdog
exit_watchdog.install({grace})
atexit.register(lambda: open({marker!r}, "w").write("exit handlers ran"))
never = threading.Event()
concurrent.futures.ThreadPoolExecutor(1).submit(never.wait)  # joined at exit, never ends
print("main thread done", flush=True)
"""


@pytest.mark.parametrize("grace", [0, 2])
def test_a_server_whose_exit_waits_on_a_stuck_thread_ends_after_the_grace_with_its_exit_handlers(tmp_path, grace):
    marker = tmp_path / "ran"
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", CHILD.format(argv0="daphne", grace=grace, marker=str(marker))],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    took = time.monotonic() - started

    assert done.returncode == 0, done.stderr
    assert grace <= took < grace + 10, took
    assert marker.read_text() == "exit handlers ran"
    assert "still not exited" in done.stderr and "ThreadPoolExecutor" in done.stderr, done.stderr


def test_it_is_not_armed_outside_a_server_command(tmp_path):
    """A test run or a script importing the app keeps its own exit (and its exit code)."""
    marker = tmp_path / "ran"
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(argv0="pytest", grace=0, marker=str(marker))],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "main thread done"
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(timeout=3)  # the stuck thread holds it, as it would without the watchdog
        assert not marker.exists()
    finally:
        child.kill()
        child.wait()

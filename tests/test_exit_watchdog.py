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
import atexit, concurrent.futures, logging, sys, threading, time
sys.argv[0] = {argv0!r}  # as the `daphne` command's process, or not
logging.basicConfig(level=logging.INFO, format="%(message)s")
from config import exit_watchdog
exit_watchdog.install({grace})

def handler():
    with open({marker!r}, "a") as out:
        out.write("exit handlers ran;")
    time.sleep({handler_s})

atexit.register(handler)
never = threading.Event()
if {stuck}:
    concurrent.futures.ThreadPoolExecutor(1).submit(never.wait)  # joined at exit, never ends
print("main thread done", flush=True)
sys.exit({status})
"""


def child(argv0: str = "daphne", grace: float = 0, marker: Path = Path("/dev/null"), handler_s: float = 0,
          stuck: bool = True, status: int = 0) -> str:
    return CHILD.format(argv0=argv0, grace=grace, marker=str(marker), handler_s=handler_s, stuck=stuck, status=status)


@pytest.mark.parametrize("grace", [0, 2])
def test_a_server_whose_exit_waits_on_a_stuck_thread_ends_after_the_grace_with_its_exit_handlers(tmp_path, grace):
    marker = tmp_path / "ran"
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", child(grace=grace, marker=marker)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    took = time.monotonic() - started

    assert done.returncode == 0, done.stderr
    assert grace <= took < grace + 10, took
    assert marker.read_text() == "exit handlers ran;"
    assert "still not exited" in done.stderr and "ThreadPoolExecutor" in done.stderr, done.stderr


def test_it_is_not_armed_outside_a_server_command(tmp_path):
    """A test run or a script importing the app keeps its own exit (and its exit code)."""
    marker = tmp_path / "ran"
    process = subprocess.Popen([sys.executable, "-c", child(argv0="pytest", marker=marker)],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "main thread done"
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=3)  # the stuck thread holds it, as it would without the watchdog
        assert not marker.exists()
    finally:
        process.kill()
        process.wait()


def test_it_keeps_the_status_the_process_was_exiting_with(tmp_path):
    done = subprocess.run([sys.executable, "-c", child(marker=tmp_path / "ran", status=3)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 3 and "still not exited" in done.stderr, done.stderr


def test_an_exit_that_is_only_slow_in_its_exit_handlers_is_left_alone(tmp_path):
    """Past the join, the exit handlers are the main thread's: the watchdog neither runs them
    again nor cuts them short."""
    marker = tmp_path / "ran"
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", child(grace=0.5, marker=marker, handler_s=3, stuck=False, status=4)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 4 and time.monotonic() - started >= 3
    assert marker.read_text() == "exit handlers ran;" and "still not exited" not in done.stderr, done.stderr


@pytest.mark.parametrize(("argv0", "armed"), [("/usr/bin/daphne", True), ("/venv/bin/uvicorn", True),
                                              ("/venv/lib/python3.11/site-packages/uvicorn/__main__.py", True),
                                              ("/venv/bin/pytest", False), ("manage.py", False),
                                              ("/venv/bin/celery", False)])
def test_it_knows_the_server_commands(monkeypatch, argv0, armed):
    from config import exit_watchdog

    monkeypatch.setattr(sys, "argv", [argv0])
    monkeypatch.delitem(sys.modules, "daphne.cli", raising=False)
    assert exit_watchdog.served_by_a_server_command() is armed

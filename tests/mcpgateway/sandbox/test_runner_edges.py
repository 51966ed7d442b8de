"""Edges of a sandbox execution that left a run unable to go on (each found by a review, each
test failing before its fix): zombies of killed background processes filling the pids limit
of a session (its pid 1 was `sleep`, which reaps nothing), a file put under another file
(the saved workspace could never be unpacked again), a non-UTF-8 file name (the whole answer
failed after the code had run), a pipe's worth of stdin (the runner deadlocked with `cat`)
and a background process left running (the call waited for the time limit)."""

from __future__ import annotations

import time

import pytest

from tests.mcpgateway.sandbox.conftest import structured

pytestmark = pytest.mark.docker

ZOMBIES = ("import os\nprint(sum(1 for p in os.listdir('/proc') if p.isdigit() and "
           "open(f'/proc/{p}/stat').read().rsplit(')', 1)[1].split()[0] == 'Z'))")


def test_a_session_reaps_what_its_calls_leave_so_the_pids_limit_holds(make_sandbox):
    sandbox = make_sandbox(mode="session", pids=32)
    for _ in range(16):  # 2 orphans a call: 32 zombies would have filled the limit by the 14th
        r = structured(sandbox("run_shell", {"command": "sleep 300 & sleep 300 & wait", "timeout_s": 1}, run_id=62))
        assert r["timed_out"]
    z = structured(sandbox("run_python", {"code": ZOMBIES}, run_id=62))
    assert (z["exit_code"], z["stdout"].strip()) == (0, "0"), z
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    assert structured(sandbox("run_python", {"code": bomb, "timeout_s": 2}, run_id=62))["timed_out"]
    later = structured(sandbox("run_shell", {"command": "echo $(echo hi) | cat"}, run_id=62))
    assert later["stdout"] == "hi\n", later


@pytest.mark.parametrize("mode", ["execution", "session"])
def test_a_file_cannot_be_put_under_a_file_and_the_workspace_stays_usable(make_sandbox, mode):
    sandbox = make_sandbox(mode=mode)
    assert not sandbox("put_file", {"path": "notes.txt", "content": "hello"}, run_id=52).is_error
    under = sandbox("put_file", {"path": "notes.txt/inner.txt", "content": "oops"}, run_id=52)
    assert under.is_error and "notes.txt is a file" in under.content, under.content
    assert not sandbox("put_file", {"path": "dir/a.txt", "content": "a"}, run_id=52).is_error
    over = sandbox("put_file", {"path": "dir", "content": "replaces a directory?"}, run_id=52)
    assert over.is_error and "is a directory" in over.content, over.content
    ran = structured(sandbox("run_python", {"code": 'print(open("notes.txt").read())'}, run_id=52))
    assert ran["stdout"] == "hello\n", ran


def test_a_file_name_that_is_not_utf8_is_shown_escaped_and_the_result_kept(make_sandbox):
    sandbox = make_sandbox()
    ran = sandbox("run_python", {"code": 'open(b"caf\\xe9.txt", "w").write("x"); print("ok")'}, run_id=51)
    assert not ran.is_error and structured(ran)["stdout"] == "ok\n", ran.content
    assert [f["path"] for f in structured(ran)["files_changed"]] == ["caf\\xe9.txt"]
    listed = sandbox("list_files", {}, run_id=51)
    assert not listed.is_error and [f["path"] for f in structured(listed)["files"]] == ["caf\\xe9.txt"], listed.content
    again = structured(sandbox("run_python", {"code": 'import os\nprint(os.listdir(b"."))'}, run_id=51))
    assert again["stdout"] == "[b'caf\\xe9.txt']\n", again  # the file itself kept its bytes


@pytest.mark.parametrize("mode", ["execution", "session"])
def test_more_than_a_pipe_of_stdin_is_fed_while_the_output_is_read(make_sandbox, mode):
    sandbox = make_sandbox(mode=mode, timeout_s=5)
    started = time.monotonic()
    r = structured(sandbox("run_shell", {"command": "wc -c; cat", "stdin": "a" * 300_000}, run_id=64))
    assert not r["timed_out"] and time.monotonic() - started < 4, r
    assert r["stdout"].startswith("300000"), r["stdout"][:50]
    flood = structured(sandbox("run_shell", {"command": "cat", "stdin": "b" * 3_000_000}, run_id=64))
    assert flood["output_truncated"] and not flood["timed_out"], flood["note"]


def test_a_background_process_left_running_does_not_hold_the_call_to_its_time_limit(make_sandbox):
    sandbox = make_sandbox(timeout_s=8)
    started = time.monotonic()
    r = structured(sandbox("run_shell", {"command": "sleep 600 &\necho done"}, run_id=66))
    assert (r["exit_code"], r["stdout"], r["timed_out"]) == (0, "done\n", False), r
    assert time.monotonic() - started < 5


def test_the_code_cannot_end_its_sessions_pid_1(make_sandbox):
    """The reaper once exited on SIGTERM, which the code (same user) could send: `kill 1` took
    the session's container and workspace with it (found by a review of that change)."""
    sandbox = make_sandbox(mode="session")
    assert not sandbox("put_file", {"path": "work.txt", "content": "kept"}, run_id=67).is_error
    for command in ("kill 1; kill -TERM 1; kill -INT 1; kill -HUP 1; true", "pkill python3; true"):
        structured(sandbox("run_shell", {"command": command}, run_id=67))
        after = structured(sandbox("run_shell", {"command": "cat work.txt"}, run_id=67))
        assert after["stdout"] == "kept", (command, after)

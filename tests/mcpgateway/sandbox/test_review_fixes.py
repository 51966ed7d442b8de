# Found by an outside review (2026-12-07, the sandbox); failed before its fix.
"""Hostile code against the real engine: a hard link or a sparse file that left a session's
workspace unrestorable, writes through /proc/1/fd/1 into the container's log on the host,
a program killed at once for redirecting its own output, a session reset by reading a huge
file, a fixed /tmp/main.* a run could break for every later run, a bare ENOSPC for
oversized code, and a server that did not exit on SIGTERM.

Each test drives `mcpgateway.sandbox.service.Sandbox` directly (no gateway, no database);
the fixture closes every sandbox, which removes the containers it made, and checks that
none is left.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings

from mcpgateway.sandbox.backends.docker import LABEL
from mcpgateway.sandbox.config import SandboxConfig
from mcpgateway.sandbox.errors import SandboxError
from mcpgateway.sandbox.service import Sandbox

pytestmark = pytest.mark.docker

SESSION = "review_fixes"


@pytest.fixture
def make(docker_client, tmp_path: Path) -> Iterator[Callable[..., Sandbox]]:
    made: list[Sandbox] = []

    def factory(**overrides) -> Sandbox:
        config = {"image": settings.SANDBOX["image"], "pool": 0, "timeout_s": 10,
                  "state_dir": str(tmp_path / "state"), **overrides}
        sandbox = Sandbox(SandboxConfig(**config))
        made.append(sandbox)
        return sandbox

    yield factory
    owners = [s.backend.owner for s in made]
    for sandbox in made:
        sandbox.close()
    for owner in owners:
        left = docker_client.api.containers(all=True, filters={"label": f"{LABEL}.owner={owner}"})
        assert left == [], f"containers left behind: {left}"


def session_container(client, session: str) -> str:
    rows = client.api.containers(all=True, filters={"label": f"{LABEL}.session={session}"})
    assert len(rows) == 1, rows
    return rows[0]["Id"]


def test_a_hard_link_in_the_workspace_is_kept_as_a_file_and_later_calls_run(make):
    sandbox = make()
    session = f"{SESSION}-hardlink"

    first = sandbox.run_shell(session, False, "echo data > a && ln a b")
    after = sandbox.run_shell(session, False, "echo next; cat a b")

    assert first["exit_code"] == 0, first
    assert after["exit_code"] == 0 and after["stdout"] == "next\ndata\ndata\n", after["note"]


def test_a_workspace_over_its_cap_is_not_saved_and_the_previous_one_is_kept(make):
    sandbox = make(workspace_mb=64)
    session = f"{SESSION}-sparse"

    sandbox.run_shell(session, False, "echo before > before.txt")
    over = sandbox.run_shell(session, False, "echo keep > keep.txt && truncate -s 100M big.img")
    after = sandbox.run_shell(session, False, "ls")

    assert over["exit_code"] == 0 and "64 MB limit" in over["note"] and "not kept" in over["note"], over["note"]
    assert after["exit_code"] == 0 and after["stdout"] == "before.txt\n", after["note"]


def test_code_cannot_write_into_the_containers_log_on_the_host(make, docker_client):
    sandbox = make(mode="session")
    session = f"{SESSION}-hostlog"

    result = sandbox.run_python(session, False, (
        "try:\n"
        "    sink = open('/proc/1/fd/1', 'wb', buffering=0)\n"
        "    for _ in range(20):\n"
        "        sink.write(b'x' * (1 << 20))\n"
        "    print('wrote 20 MB to the host log')\n"
        "except OSError as exc:\n"
        "    print('refused', exc.errno)\n"))
    container = session_container(docker_client, session)
    logged = docker_client.api.logs(container, stdout=True, stderr=True)
    log_config = docker_client.api.inspect_container(container)["HostConfig"]["LogConfig"]

    assert result["exit_code"] == 0 and result["stdout"] == "refused 13\n", result
    assert len(logged) < 64 * 1024, f"{len(logged)} bytes reached the container's log on the host"
    assert log_config == {"Type": "json-file", "Config": {"max-size": "16k", "max-file": "1"}}, log_config


def test_a_script_that_redirects_its_own_output_runs_to_the_end(make):
    sandbox = make()

    result = sandbox.run_shell(f"{SESSION}-redirect", False,
                               "exec >build.log 2>&1\nsleep 1\necho done > result.txt\necho finished")

    assert (result["exit_code"], result["signal"], result["timed_out"]) == (0, None, False), result
    assert {f["path"] for f in result["files_changed"]} == {"build.log", "result.txt"}, result
    assert sandbox.get_file(f"{SESSION}-redirect", False, "build.log") == b"finished\n"


def test_a_program_that_closes_its_output_and_loops_is_reported_as_timed_out(make):
    sandbox = make()

    result = sandbox.run_python(f"{SESSION}-closed", False, "import os\nos.close(1)\nos.close(2)\nwhile True: pass",
                                timeout_s=2)

    assert result["timed_out"] and "time limit" in result["note"], result
    assert result["duration_ms"] >= 2000, result


def test_session_mode_get_file_of_a_huge_file_is_refused_and_keeps_the_session(make):
    sandbox = make(mode="session", max_file_bytes=1024 * 1024)
    session = f"{SESSION}-getfile"

    made = sandbox.run_shell(session, False, "echo keep > keep.txt && truncate -s 200M big.img")
    with pytest.raises(SandboxError) as refused:
        sandbox.get_file(session, False, "big.img")

    assert made["exit_code"] == 0, made
    assert str(refused.value) == "big.img: 209715200 bytes is over the 1048576-byte file limit"
    assert "keep.txt" in sandbox.list_files(session, False)
    assert sandbox.get_file(session, False, "keep.txt") == b"keep\n"


@pytest.mark.parametrize("spoiler", ["chmod 0 /tmp/run-*; chmod 0 /tmp/run-*/main.sh",
                                     "ln -s /workspace/trap /tmp/main.sh", "mkdir /tmp/main.sh"])
def test_session_mode_a_run_cannot_make_later_runs_fail_through_tmp(make, spoiler):
    sandbox = make(mode="session")
    session = f"{SESSION}-tmp"

    first = sandbox.run_shell(session, False, f"{spoiler}; echo first")
    after = sandbox.run_shell(session, False, "echo next; ls /tmp | grep -c run- || true")

    assert first["exit_code"] == 0, first
    # The code of each run is removed after it: only this run's own directory is there.
    assert after["exit_code"] == 0 and after["stdout"] == "next\n1\n", (after["stdout"], after["note"])


@pytest.mark.parametrize(("arguments", "words"), [
    ({"code": "x = 1\n" + "#" * (20 << 20)}, "the code is"),
    ({"code": "print(1)", "stdin": "s" * (9 << 20)}, "stdin is"),
    ({"code": "print(1)", "files": {"big.txt": "f" * (9 << 20)}}, "big.txt:"),
])
def test_a_request_too_large_for_the_sandbox_gets_a_clear_error(make, arguments, words):
    sandbox = make(tmp_mb=16)
    code = arguments.pop("code")

    with pytest.raises(SandboxError) as refused:
        sandbox.run_python(f"{SESSION}-huge", False, code, **arguments)

    assert str(refused.value).startswith(words) and "limit" in str(refused.value), str(refused.value)


def test_the_files_of_a_run_cannot_exceed_the_workspace(make):
    sandbox = make(workspace_mb=1)

    with pytest.raises(SandboxError) as refused:
        sandbox.run_shell(f"{SESSION}-files", False, "ls", files={"a": "a" * 600_000, "b": "b" * 600_000})

    assert "1 MB limit" in str(refused.value), str(refused.value)


def test_the_sandbox_server_exits_on_sigterm(tmp_path: Path):
    server = subprocess.Popen(
        [sys.executable, "-m", "mcpgateway.sandbox.server", "--pool", "0", "--state-dir", str(tmp_path / "state")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=settings.BASE_DIR)
    try:
        server.stdin.write(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "review", "version": "1"}}}).encode() + b"\n")
        server.stdin.flush()
        assert b'"result"' in server.stdout.readline()

        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            code = None
        assert code == 0, "the sandbox server was still running 15 s after SIGTERM"
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()

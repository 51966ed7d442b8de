"""Execution-mode workspaces are kept on disk per session: a sandbox server killed and
restarted by the gateway continues them; a workspace idle past its TTL is removed.
Real engine, real sandbox server behind the gateway."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from mcpgateway.sandbox.config import SandboxConfig
from mcpgateway.sandbox.service import Sandbox
from mcpgateway.sandbox.workspaces import WorkspaceStore
from tests.mcpgateway.sandbox.conftest import structured

pytestmark = pytest.mark.docker


def kill_and_wait_for_restart(runtime, server) -> None:
    upstream = f"s{server.pk}"
    deadline = time.monotonic() + 30  # (marked up with its pid a moment after its tools are recorded)
    while (health := runtime.health(upstream)) is None or health.pid is None:
        assert time.monotonic() < deadline, "the server was never marked up"
        time.sleep(0.02)
    victim = health.pid
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while True:
        health = runtime.health(upstream)
        if health is not None and health.state == "up" and health.pid not in (None, victim):
            return
        assert time.monotonic() < deadline, f"the sandbox server did not come back: {health}"
        time.sleep(0.05)


def test_it_keeps_a_workspace_across_a_sandbox_server_restart(make_sandbox, gateway_runtime):
    sandbox = make_sandbox()
    put = sandbox("put_file", {"path": "notes/today.txt", "content": "kept\n"}, run_id=41)
    ran = sandbox.run("open('made.txt', 'w').write('by code')", run_id=41)
    assert not put.is_error and ran["files_changed"] == [{"path": "made.txt", "size": 7}]

    kill_and_wait_for_restart(gateway_runtime, sandbox.server)
    got = sandbox("get_file", {"path": "notes/today.txt"}, run_id=41)
    listed = sandbox("list_files", {}, run_id=41)
    other = sandbox("list_files", {}, run_id=42)

    assert not got.is_error, got.content
    assert structured(got)["content"] == "kept\n"
    assert {f["path"]: f["size"] for f in structured(listed)["files"]} == {"made.txt": 7, "notes/today.txt": 5}
    assert structured(other)["files"] == []


def test_it_continues_a_workspace_in_code_after_a_restart(make_sandbox, gateway_runtime):
    sandbox = make_sandbox()
    sandbox("put_file", {"path": "n.txt", "content": "41"}, run_id=43)

    kill_and_wait_for_restart(gateway_runtime, sandbox.server)
    after = sandbox.run("print(int(open('n.txt').read()) + 1)", run_id=43)

    assert after["stdout"] == "42\n"


def test_it_removes_a_workspace_idle_past_its_ttl(tmp_path: Path):
    config = SandboxConfig(image=django_settings.SANDBOX["image"], pool=0, idle_s=1.0, state_dir=str(tmp_path))
    first = Sandbox(config)
    first.put_file("run:1", False, "a.txt", b"old")
    first.put_file("run:2", False, "b.txt", b"fresh")
    saved = WorkspaceStore(str(tmp_path), 1.0)
    assert saved.path("run:1", False).exists()
    os.utime(saved.path("run:1", False), (time.time() - 5, time.time() - 5))  # last used 5 s ago

    first.drop_idle()

    assert not saved.path("run:1", False).exists() and saved.path("run:2", False).exists()
    first.close()


def test_a_restarted_server_does_not_continue_an_expired_workspace(tmp_path: Path):
    config = SandboxConfig(image=django_settings.SANDBOX["image"], pool=0, idle_s=1.0, state_dir=str(tmp_path))
    first = Sandbox(config)
    first.put_file("run:1", False, "a.txt", b"old")
    first.close()
    path = WorkspaceStore(str(tmp_path), 1.0).path("run:1", False)
    os.utime(path, (time.time() - 5, time.time() - 5))

    second = Sandbox(config)
    try:
        assert second.list_files("run:1", False) == {}
        assert not path.exists()
    finally:
        second.close()


def test_it_keeps_workspaces_in_a_private_directory_named_by_digest(tmp_path: Path):
    sandbox = Sandbox(SandboxConfig(image=django_settings.SANDBOX["image"], pool=0, state_dir=str(tmp_path)))
    try:
        sandbox.put_file("../../etc/passwd", False, "x.txt", b"x")
    finally:
        sandbox.close()

    (saved,) = (tmp_path / "workspaces").iterdir()
    assert saved.name.endswith(".tar") and ".." not in saved.name and len(saved.stem) == 40
    assert (tmp_path / "workspaces").stat().st_mode & 0o077 == 0

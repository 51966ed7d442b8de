"""Sessions, workspaces, modes, cleanup after crashes, and the clear errors: real engine,
real sandbox server behind the gateway."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from mcpgateway.actions.access import do_grant
from mcpgateway.models import AuditEntry
from mcpgateway.sandbox.config import SandboxConfig
from mcpgateway.sandbox.service import Sandbox
from tests.mcpgateway.sandbox.conftest import sandbox_containers, structured

pytestmark = pytest.mark.docker


def test_a_runs_workspace_persists_between_fresh_containers_but_nothing_else_does(make_sandbox):
    sandbox = make_sandbox()

    first = sandbox.run("import subprocess\nopen('notes.txt', 'w').write('from call 1')\n"
                        "open('/tmp/scratch', 'w').write('x')\n"
                        "subprocess.Popen(['sleep', '300'])\nprint('started')", run_id=7)
    second = sandbox.run("import os\nprint(open('notes.txt').read())\nprint(os.path.exists('/tmp/scratch'))\n"
                         "print(sorted(p for p in os.listdir('/proc') if p.isdigit() and "
                         "open(f'/proc/{p}/cmdline').read().startswith('sleep')))", run_id=7)
    other_run = sandbox.run("import os\nprint(os.listdir('.'))", run_id=8)

    assert first["stdout"] == "started\n"
    # Same files; a fresh container: no /tmp leftovers, and not the `sleep` the first call left.
    assert second["stdout"].splitlines() == ["from call 1", "False", "[]"]
    assert other_run["stdout"] == "[]\n"  # another run's session sees none of it


def test_files_go_in_and_out_of_the_workspace(make_sandbox):
    sandbox = make_sandbox()
    blob = bytes(range(256))

    put = sandbox("put_file", {"path": "data/in.txt", "content": "hello\n"}, run_id=1)
    put_binary = sandbox("put_file", {"path": "data/blob.bin", "content": base64.b64encode(blob).decode(),
                                      "encoding": "base64"}, run_id=1)
    ran = sandbox.run("import pathlib\ntext = pathlib.Path('data/in.txt').read_text()\n"
                      "pathlib.Path('out/upper.txt').parent.mkdir()\npathlib.Path('out/upper.txt').write_text(text.upper())",
                      run_id=1, arguments={"files": {"extra.py": "X = 1\n"}})
    got = sandbox("get_file", {"path": "out/upper.txt"}, run_id=1)
    got_binary = sandbox("get_file", {"path": "/workspace/data/blob.bin", "encoding": "base64"}, run_id=1)
    listed = sandbox("list_files", {}, run_id=1)

    assert not put.is_error and structured(put)["size"] == 6 and not put_binary.is_error
    assert ran["files_changed"] == [{"path": "out/upper.txt", "size": 6}]
    assert structured(got)["content"] == "HELLO\n"
    assert base64.b64decode(structured(got_binary)["content"]) == blob
    assert {f["path"] for f in structured(listed)["files"]} == {"data/in.txt", "data/blob.bin", "extra.py", "out/upper.txt"}


def test_bad_requests_get_clear_errors_and_are_audited(make_sandbox):
    sandbox = make_sandbox(max_timeout_s=60)

    outside = sandbox("get_file", {"path": "../etc/passwd"})
    absolute = sandbox("put_file", {"path": "/etc/cron.d/x", "content": "x"})
    missing = sandbox("get_file", {"path": "nope.txt"})
    bad_b64 = sandbox("put_file", {"path": "a.bin", "content": "***", "encoding": "base64"})
    too_long = sandbox("run_python", {"code": "print(1)", "timeout_s": 600})
    empty = sandbox("run_shell", {"command": "  "})

    assert "only paths inside the workspace" in outside.content and outside.is_error
    assert "only paths inside the workspace" in absolute.content and absolute.is_error
    assert "nope.txt: no such file in the workspace" in missing.content
    assert "not valid base64" in bad_b64.content
    assert "timeout_s must be between 0 and 60" in too_long.content
    assert "command is empty" in empty.content
    assert AuditEntry.objects.filter(server_name="sandbox", status="error").count() == 6


def test_shell_commands_get_stdin_and_exit_codes(make_sandbox):
    sandbox = make_sandbox()

    result = sandbox("run_shell", {"command": "read name; echo \"hi $name\"; echo oops >&2; exit 3", "stdin": "ada\n"})

    data = structured(result)
    assert (data["exit_code"], data["stdout"], data["stderr"]) == (3, "hi ada\n", "oops\n")
    assert not result.is_error  # the tool worked; the command failed, and says so


def test_callers_outside_runs_get_a_session_each(make_sandbox):
    sandbox = make_sandbox()
    do_grant(sandbox.server, agent="intruder")

    sandbox("put_file", {"path": "mine.txt", "content": "private"})
    theirs = sandbox("get_file", {"path": "mine.txt"}, agent="intruder")

    assert theirs.is_error and "no such file" in theirs.content


def test_session_mode_keeps_one_container_per_run(make_sandbox, docker_client):
    sandbox = make_sandbox(mode="session")

    first = sandbox.run("open('/tmp/marker', 'w').write('same container'); open('kept.txt', 'w').write('1')", run_id=3)
    second = sandbox.run("print(open('/tmp/marker').read())", run_id=3)
    containers = sandbox_containers(docker_client)
    looped = sandbox.run("import subprocess\nsubprocess.Popen(['sleep', '300'])\nwhile True: pass",
                         run_id=3, arguments={"timeout_s": 1})
    after = sandbox.run("import os\nprint(os.listdir('.'))\n"
                        "print(sorted(open(f'/proc/{p}/cmdline').read().split(chr(0))[0] for p in os.listdir('/proc') if p.isdigit()))",
                        run_id=3)

    assert first["exit_code"] == 0 and second["stdout"] == "same container\n"
    assert len(containers) == 1 and containers[0]["Labels"]["agentdeck.sandbox.session"] == "run:3"
    assert looped["timed_out"]
    # The session goes on with its files; the loop and what it started are gone.
    lines = after["stdout"].splitlines()
    assert lines[0] == "['kept.txt']"
    # pid 1 (the reaper), the runner and this code: the `sleep 300` is gone, and reaped.
    assert lines[1] == "['python3', 'python3', 'python3']", lines[1]


@pytest.mark.parametrize("mode", ["execution", "session"])
def test_code_that_freezes_the_runner_is_killed_by_the_host(make_sandbox, docker_client, mode):
    """The code stops its own supervisor (the in-container runner) to outlive the time limit:
    the host's deadline kills the container instead."""
    sandbox = make_sandbox(mode=mode)

    frozen = sandbox.run("import os, signal\nos.kill(os.getppid(), signal.SIGSTOP)\nwhile True: pass",
                         run_id=4, arguments={"timeout_s": 1})
    after = sandbox.run("print('alive')", run_id=4)

    assert frozen["timed_out"] and frozen["exit_code"] is None
    assert after["stdout"] == "alive\n"
    if mode == "session":
        assert "session's container was removed" in frozen["note"]
        assert len(sandbox_containers(docker_client)) == 1  # the replacement


def test_containers_of_a_crashed_sandbox_process_are_reaped(docker_client):
    """A process holding a session container dies by SIGKILL; the next sandbox process to
    start removes the orphan (its owner is gone), and nothing is left."""
    script = (
        "import sys, time\nfrom mcpgateway.sandbox.config import SandboxConfig\n"
        "from mcpgateway.sandbox.service import Sandbox\n"
        f"sb = Sandbox(SandboxConfig(image={django_settings.SANDBOX['image']!r}, mode='session', pool=0))\n"
        "r = sb.run_python('crash', False, 'print(1)')\nprint(r['exit_code'], flush=True)\ntime.sleep(300)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=django_settings.BASE_DIR)
    try:
        assert child.stdout.readline().strip() == "0"
        orphans = sandbox_containers(docker_client)
        assert len(orphans) == 1 and orphans[0]["Labels"]["agentdeck.sandbox.owner"].split(":")[1] == str(child.pid)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert len(sandbox_containers(docker_client)) == 1  # the crash left it behind

    survivor = Sandbox(SandboxConfig(image=django_settings.SANDBOX["image"], pool=0))
    survivor.start_maintenance()  # reaps on start
    survivor.close()

    assert sandbox_containers(docker_client) == []


def test_without_an_engine_the_tools_fail_clearly_and_nothing_runs_on_the_host(make_sandbox, settings, tmp_path: Path):
    settings.SANDBOX_DOCKER_HOST = f"unix://{tmp_path}/no-engine.sock"
    marker = tmp_path / f"ran-{uuid.uuid4().hex}"
    sandbox = make_sandbox()

    result = sandbox("run_python", {"code": f"open({str(marker)!r}, 'w').write('ran on the host')"})
    shell = sandbox("run_shell", {"command": f"touch {marker}"})

    assert result.is_error and "Sandbox unavailable: no Docker engine is reachable" in result.content
    assert "Nothing was run" in result.content and shell.is_error
    assert not marker.exists()
    assert AuditEntry.objects.filter(tool_name="sandbox__run_python", status="error").exists()


def test_a_runtime_the_engine_lacks_is_a_clear_error(make_sandbox):
    sandbox = make_sandbox(runtime="runsc")  # gVisor: not installed on this engine

    result = sandbox("run_python", {"code": "print(1)"})

    assert result.is_error and "no runtime 'runsc'" in result.content


def test_an_image_that_is_not_there_is_a_clear_error(make_sandbox):
    sandbox = make_sandbox(image=f"agentdeck/not-built-{uuid.uuid4().hex[:6]}:1")

    result = sandbox("run_python", {"code": "print(1)"})

    assert result.is_error and "could not be pulled" in result.content and "build_sandbox_image" in result.content


def test_the_server_process_removes_its_containers_when_stopped(docker_client):
    env = {**os.environ, "PYTHONPATH": str(django_settings.BASE_DIR)}
    script = (
        "import os, signal, threading\nfrom mcpgateway.sandbox.config import SandboxConfig\n"
        "from mcpgateway.sandbox.service import Sandbox\n"
        f"sb = Sandbox(SandboxConfig(image={django_settings.SANDBOX['image']!r}, mode='session', pool=0))\n"
        "def stop(*a): raise SystemExit(0)\nsignal.signal(signal.SIGTERM, stop)\n"
        "try:\n    sb.run_python('s', False, 'print(1)'); print('up', flush=True); threading.Event().wait()\n"
        "finally:\n    sb.close()\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout.readline().strip() == "up"
        assert len(sandbox_containers(docker_client)) == 1
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=30) == 0
        assert sandbox_containers(docker_client) == []
    finally:  # a failed assertion left the child (and its container) for ever, breaking later counts
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()

"""Each escape attempt of issue 7 runs for real, through the gateway, in a real container:
it is contained, the result says what happened, and the host is unaffected. After every
test the fixture checks that no sandbox container is left behind."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mcpgateway.models import AuditEntry

pytestmark = pytest.mark.docker


def test_a_normal_snippet_runs_and_returns_its_output_through_the_gateway(make_sandbox):
    sandbox = make_sandbox()

    result = sandbox.run("import sys, os\nprint(sum(range(10)))\nprint('warn', file=sys.stderr)\n"
                         "open('answer.txt', 'w').write('45')\nprint(os.getuid(), os.getcwd())")

    assert result["exit_code"] == 0 and not result["timed_out"]
    assert result["stdout"] == "45\n65534 /workspace\n" and result["stderr"] == "warn\n"
    assert result["files_changed"] == [{"path": "answer.txt", "size": 2}]
    assert result["duration_ms"] > 0 and result["sandbox"]["network"] is False
    row = AuditEntry.objects.get(tool_name="sandbox__run_python")
    assert row.status == "ok" and row.server_name == "sandbox" and row.agent_name == "tester"
    assert row.result["structured"]["stdout"].startswith("45")


def test_network_egress_is_impossible_without_a_network_grant(make_sandbox):
    with host_http_server() as port:
        sandbox = make_sandbox()
        result = sandbox.run(
            "import socket\n"
            f"for host in {host_addresses()!r} + ['1.1.1.1']:\n"
            "    try:\n"
            f"        socket.create_connection((host, {port}), timeout=2); print('connected', host)\n"
            "    except OSError as e:\n"
            "        print('blocked', host, e.errno)\n"
            "try:\n"
            "    socket.getaddrinfo('pypi.org', 443); print('resolved')\n"
            "except OSError:\n"
            "    print('no dns')\n"
            "print(sorted(line.split(':')[0].strip() for line in open('/proc/net/dev').readlines()[2:]))")

    assert "connected" not in result["stdout"] and "resolved" not in result["stdout"]
    assert result["stdout"].count("blocked") == len(host_addresses()) + 1
    assert result["stdout"].rstrip().endswith("['lo']")  # no interface but loopback


def test_a_grant_with_network_access_opts_in(make_sandbox, docker_client):
    network = docker_client.networks.create(f"agentdeck-test-{uuid.uuid4().hex[:8]}", driver="bridge")
    try:
        gateway_ip = network.attrs["IPAM"]["Config"][0]["Gateway"]
        with host_http_server() as port:
            sandbox = make_sandbox(grant={"network_access": True, "operator": True}, network=network.name)
            result = sandbox.run(f"import urllib.request\nprint(urllib.request.urlopen('http://{gateway_ip}:{port}/', timeout=5).read().decode())")
    finally:
        network.remove() if not network.containers else None
    assert result["exit_code"] == 0, result
    assert result["stdout"].strip() == "hello from the host" and result["sandbox"]["network"] is True


def test_a_fork_bomb_hits_the_process_limit_and_is_killed_at_the_timeout(make_sandbox):
    sandbox = make_sandbox(pids=32)

    started = time.monotonic()
    result = sandbox.run("import os\nreported = False\nwhile True:\n    try:\n        os.fork()\n    except OSError as e:\n"
                         "        if not reported:\n            print('fork failed', e.errno, flush=True)\n            reported = True\n",
                         arguments={"timeout_s": 3})

    assert result["timed_out"] and "time limit" in result["note"]
    assert "fork failed 11" in result["stdout"]  # EAGAIN: the pids limit, not the host's
    assert time.monotonic() - started < 15
    assert subprocess.run(["true"]).returncode == 0  # the host still forks


def test_a_memory_bomb_is_killed_at_the_memory_limit(make_sandbox):
    sandbox = make_sandbox(memory_mb=128)

    result = sandbox.run("chunks = []\nwhile True:\n    chunks.append(bytearray(16 * 1024 * 1024))")

    assert result["oom_killed"] and result["exit_code"] == 137 and result["signal"] == "SIGKILL"
    assert "128 MB memory limit" in result["note"]


def test_filling_the_disk_stops_at_the_workspace_cap(make_sandbox):
    sandbox = make_sandbox(workspace_mb=16)

    result = sandbox.run(
        "import errno\nwritten = 0\ntry:\n    with open('big.bin', 'wb') as f:\n        while True:\n"
        "            f.write(b'x' * 1024 * 1024); f.flush(); written += 1\n"
        "except OSError as e:\n    print('stopped', errno.errorcode[e.errno], written)\n"
        "try:\n    open('/tmp/t', 'wb').write(b'x' * 64 * 1024 * 1024)\nexcept OSError as e:\n"
        "    print('tmp', errno.errorcode[e.errno])\n")

    stopped = result["stdout"].split()
    assert stopped[:2] == ["stopped", "ENOSPC"] and int(stopped[2]) <= 16, result
    assert "tmp ENOSPC" in result["stdout"]


def test_an_infinite_loop_is_killed_at_the_timeout(make_sandbox):
    sandbox = make_sandbox()

    result = sandbox.run("while True:\n    pass", arguments={"timeout_s": 1.5})

    assert result["timed_out"] and result["exit_code"] == 137 and "1.5 s time limit" in result["note"]
    assert 1.5 <= result["duration_ms"] / 1000 < 8


def test_host_files_cannot_be_read(make_sandbox, tmp_path: Path):
    secret = tmp_path / "host-secret.txt"
    secret.write_text("the host's secret")
    sandbox = make_sandbox()

    result = sandbox.run(
        f"import os\nfor path in [{str(secret)!r}, '/work', {os.getcwd()!r}, '/var/run/docker.sock']:\n"
        "    print(path, os.path.exists(path))\n"
        "print(open('/proc/1/cmdline').read().split(chr(0))[:2])\nprint(open('/etc/hostname').read().strip())")

    lines = result["stdout"].splitlines()
    assert all(line.endswith("False") for line in lines[:4]), lines
    assert lines[4] == "['python3', '-I']" and lines[5] == "sandbox"  # its own pid 1 (the reaper) and hostname


def test_nothing_outside_the_workspace_is_writable(make_sandbox):
    sandbox = make_sandbox()

    result = sandbox.run(
        "import errno\nfor path in ['/etc/passwd', '/usr/bin/python3', '/root/x', '/home/x', '/x']:\n"
        "    try:\n        open(path, 'a').close(); print(path, 'written')\n"
        "    except OSError as e:\n        print(path, errno.errorcode[e.errno])\n")

    assert "written" not in result["stdout"]
    assert "/etc/passwd EROFS" in result["stdout"] or "/etc/passwd EACCES" in result["stdout"]
    assert "/x EROFS" in result["stdout"] or "/x EACCES" in result["stdout"]


def test_privilege_escalation_fails(make_sandbox):
    sandbox = make_sandbox()

    result = sandbox.run(
        "import os, subprocess\n"
        "status = dict(l.split(':', 1) for l in open('/proc/self/status') if ':' in l)\n"
        "print('caps', status['CapEff'].strip(), 'nnp', status['NoNewPrivs'].strip(), 'seccomp', status['Seccomp'].strip())\n"
        "try:\n    os.setuid(0); print('setuid worked')\nexcept PermissionError:\n    print('setuid refused')\n"
        "for cmd in (['mount', '-t', 'tmpfs', 'none', '/mnt'], ['unshare', '--user', '--map-root-user', 'id', '-u'], ['su', '-c', 'id']):\n"
        "    done = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)\n"
        "    print(cmd[0], done.returncode, done.stdout.strip())\n"
        "print('euid', os.geteuid())\n")

    out = result["stdout"]
    assert "caps 0000000000000000 nnp 1 seccomp 2" in out  # no capabilities, no-new-privileges, seccomp filter
    assert "setuid refused" in out and "euid 65534" in out
    for tool in ("mount", "unshare", "su"):
        line = next(line for line in out.splitlines() if line.startswith(tool + " "))
        assert line.split()[1] != "0" and not line.endswith(" 0"), line


def test_huge_output_is_cut_at_the_cap(make_sandbox):
    sandbox = make_sandbox(output_bytes=50_000)

    result = sandbox.run("import sys\nwhile True:\n    sys.stdout.write('y' * 65536)")

    assert result["output_truncated"] and len(result["stdout"]) == 50_000
    assert "50000-byte limit" in result["note"] and not result["timed_out"]


# -- helpers --------------------------------------------------------------------------------


def host_addresses() -> list[str]:
    """This machine's own addresses that a process on the host could reach."""
    found = {"127.0.0.1"}
    try:
        found |= {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
    except OSError:
        pass
    return sorted(found)


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"hello from the host"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class host_http_server:
    def __enter__(self) -> int:
        self.server = ThreadingHTTPServer(("0.0.0.0", 0), _Hello)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self.server.server_address[1]

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

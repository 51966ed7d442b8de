"""The Docker backend: hardened containers through the `docker` SDK.

Every container: no network unless the call's grant allows it, read-only root
filesystem, size-capped tmpfs at /workspace and /tmp, a non-root user, all capabilities
dropped, no-new-privileges, the engine's default seccomp profile (never `unconfined`),
pids, memory (no swap) and CPU limits, optionally another runtime such as gVisor's
`runsc`. Containers carry labels naming their owner process and expiry, so the reaper
removes them after a crash of the process that made them.

The container's own log (its pid 1's stdout and stderr, kept by the engine on the host) is
capped at a few kilobytes, and pid 1 is non-dumpable: the code once wrote to /proc/1/fd/1
and filled the host's json-file log without bound.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import struct
import threading
import time
from pathlib import Path

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound

from mcpgateway.sandbox.backends import Box, RawExecution
from mcpgateway.sandbox.config import SandboxConfig
from mcpgateway.sandbox.errors import SandboxUnavailable

log = logging.getLogger(__name__)

LABEL = "agentdeck.sandbox"
# The container's pid 1: it reaps the processes the runner's kill(-1) leaves orphaned (they
# are re-parented to pid 1). It was `sleep infinity`, which reaps nothing: the zombies,
# counted against the pids limit, left a session unable to fork. Not Docker's init (tini):
# its child would run as the sandbox user, and kill(-1) would end it and the container;
# pid 1 itself is the one process kill(-1) never signals. It handles SIGCHLD only: from inside
# its namespace, a signal pid 1 has no handler for is never delivered, so the code (same user)
# cannot end it with `kill 1` or `pkill python3`; the host removes containers with SIGKILL.
# It makes itself non-dumpable first (PR_SET_DUMPABLE = 0): its /proc/1/fd, which led to the
# container's log on the host, is then closed to the code, as is ptrace.
REAPER = """
import os, signal
try:
    import ctypes
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)
except (ImportError, OSError, AttributeError):
    pass  # the log's cap (LOG_CONFIG) still bounds what could reach the host
def reap(*_):
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return
        except ChildProcessError:
            return
signal.signal(signal.SIGINT, signal.SIG_DFL)  # Python's own handler would let `kill -INT 1` end it
signal.signal(signal.SIGCHLD, reap)
while True:
    signal.pause()
    reap()
"""
RUNNER = (Path(__file__).resolve().parent.parent / "runner.py").read_text()
# What the engine keeps of pid 1's output on the host: one json-file of at most 16 KB.
LOG_CONFIG = {"type": "json-file", "config": {"max-size": "16k", "max-file": "1"}}
API_TIMEOUT_S = 30
CHECK_TTL_S = 5.0


def owner_token(pid: int | None = None) -> str:
    """`host:pid:start-time` of a process: names it without being fooled by pid reuse."""
    pid = pid or os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid)}"


def _start_ticks(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone"
    return stat.rsplit(")", 1)[1].split()[19]


def owner_alive(token: str) -> bool:
    host, _, rest = token.partition(":")
    if host != socket.gethostname():
        return True  # another machine's process: only expiry removes its containers
    pid, _, ticks = rest.partition(":")
    return pid.isdigit() and _start_ticks(int(pid)) == ticks


class DockerBackend:
    def __init__(self, config: SandboxConfig):
        self.config = config
        self.owner = owner_token()
        self._client: docker.DockerClient | None = None
        self._checked_until = 0.0
        self._lock = threading.Lock()
        uid, _, gid = config.user.partition(":")
        self._uid, self._gid = uid or "65534", gid or uid or "65534"

    # -- engine -------------------------------------------------------------------------

    def _engine(self) -> docker.DockerClient:
        if self._client is None:
            try:
                self._client = docker.from_env(timeout=API_TIMEOUT_S)
            except DockerException as exc:
                raise SandboxUnavailable(f"no Docker engine is reachable ({_where()}): {exc}. Nothing was run.") from None
        return self._client

    def check(self) -> None:
        if time.monotonic() < self._checked_until:
            return
        with self._lock:
            client = self._engine()
            try:
                client.ping()
            except (DockerException, OSError) as exc:
                self._client = None
                raise SandboxUnavailable(f"no Docker engine is reachable ({_where()}): {_short(exc)}. Nothing was run.") from None
            self._ensure_image(client)
            self._checked_until = time.monotonic() + CHECK_TTL_S

    def _ensure_image(self, client: docker.DockerClient) -> None:
        try:
            client.images.get(self.config.image)
            return
        except ImageNotFound:
            pass
        except DockerException as exc:
            raise SandboxUnavailable(f"the Docker engine failed: {_short(exc)}") from None
        try:
            log.info("sandbox image %s not present; pulling it", self.config.image)
            client.images.pull(self.config.image)
        except DockerException as exc:
            raise SandboxUnavailable(
                f"the sandbox image {self.config.image!r} is not in the engine and could not be pulled ({_short(exc)}). "
                "Build the default one with `python manage.py build_sandbox_image`, or name another with --image."
            ) from None

    # -- containers ---------------------------------------------------------------------

    def start(self, *, network: bool, session: str) -> Box:
        self.check()
        c = self.config
        now = time.time()
        labels = {LABEL: "1", f"{LABEL}.owner": self.owner, f"{LABEL}.expires": str(int(now + c.lifetime_s)),
                  f"{LABEL}.session": session[:200]}
        tmpfs = {
            "/workspace": f"rw,nosuid,nodev,size={c.workspace_mb}m,mode=0700,uid={self._uid},gid={self._gid}",
            "/tmp": f"rw,nosuid,nodev,noexec,size={c.tmp_mb}m,mode=1777",
        }
        options = dict(
            entrypoint=["python3", "-I", "-S", "-c", REAPER], command=[], user=c.user, working_dir="/workspace", labels=labels,
            hostname="sandbox", detach=True, network_mode=c.network if network else "none", read_only=True,
            tmpfs=tmpfs, cap_drop=["ALL"], security_opt=["no-new-privileges:true"], pids_limit=c.pids,
            mem_limit=f"{c.memory_mb}m", memswap_limit=f"{c.memory_mb}m", nano_cpus=int(c.cpus * 1e9),
            ulimits=[docker.types.Ulimit(name="nofile", soft=1024, hard=1024),
                     docker.types.Ulimit(name="core", soft=0, hard=0)],
            environment={}, stdin_open=False, tty=False, init=False,
            log_config=docker.types.LogConfig(type=LOG_CONFIG["type"], config=LOG_CONFIG["config"]),
        )
        if c.runtime:
            options["runtime"] = c.runtime
        client = self._engine()
        container = None
        try:
            container = client.containers.create(c.image, **options)
            container.start()
        except (DockerException, OSError) as exc:
            if container is not None:
                self._remove_id(container.id)
            self._checked_until = 0.0
            if c.runtime and "runtime" in str(exc).lower():
                raise SandboxUnavailable(f"the Docker engine has no runtime {c.runtime!r}: {_short(exc)}") from None
            raise SandboxUnavailable(f"could not start a sandbox container: {_short(exc)}") from None
        return Box(container.id, network, now, labels)

    def execute(self, box: Box, payload: bytes, *, timeout_s: float, max_bytes: int) -> RawExecution:
        api = self._engine().api
        try:
            exec_id = api.exec_create(box.id, ["python3", "-I", "-S", "-c", RUNNER], stdin=True, user=self.config.user,
                                      workdir="/workspace", environment={})["Id"]
            sock = api.exec_start(exec_id, socket=True)
        except NotFound:
            raise SandboxUnavailable("the sandbox container is gone (removed or killed)") from None
        except (DockerException, OSError) as exc:
            raise SandboxUnavailable(f"could not run in the sandbox: {_short(exc)}") from None
        raw = getattr(sock, "_sock", sock)
        deadline = time.monotonic() + timeout_s
        streams: dict[int, list[bytes]] = {1: [], 2: []}
        total = 0
        killed = ""
        try:
            raw.settimeout(max(0.05, deadline - time.monotonic()))
            raw.sendall(payload)
            # The runner reads exactly what the header announces, so no end-of-input is needed;
            # never half-close a TLS socket (that drops its TLS layer).
            if not isinstance(raw, ssl.SSLSocket):
                raw.shutdown(socket.SHUT_WR)
            while True:
                header = _recv_exact(raw, 8, deadline)
                if header is None:
                    break
                kind, size = header[0], struct.unpack(">I", header[4:])[0]
                body = _recv_exact(raw, size, deadline)
                if body is None:
                    break
                total += size
                if total > max_bytes:
                    killed = "output"
                    break
                streams.setdefault(kind, []).append(body)
        except TimeoutError:
            killed = "timeout"
        except OSError as exc:
            log.warning("sandbox exec stream failed: %s", exc)
        finally:
            try:
                raw.close()
            except OSError:
                pass
        if killed:
            self.kill(box)
        return RawExecution(b"".join(streams[1]), b"".join(streams[2]), killed)

    def kill(self, box: Box) -> None:
        try:
            self._engine().api.kill(box.id)
        except (DockerException, OSError):
            pass

    def remove(self, box: Box) -> None:
        self._remove_id(box.id)

    def _remove_id(self, container_id: str) -> None:
        try:
            self._engine().api.remove_container(container_id, force=True)
        except NotFound:
            pass
        except (DockerException, OSError) as exc:
            if "already in progress" not in str(exc):
                log.warning("could not remove sandbox container %s: %s", container_id[:12], _short(exc))

    def reap(self) -> int:
        try:
            found = self._engine().api.containers(all=True, filters={"label": f"{LABEL}=1"})
        except (DockerException, OSError, SandboxUnavailable):
            return 0
        now = time.time()
        removed = 0
        for row in found:
            labels = row.get("Labels") or {}
            owner = labels.get(f"{LABEL}.owner", "")
            expired = float(labels.get(f"{LABEL}.expires", "0") or 0) < now
            if expired or (owner != self.owner and not owner_alive(owner)):
                self._remove_id(row["Id"])
                removed += 1
        return removed

    def owned(self) -> list[str]:
        """Ids of the containers this process made that still exist."""
        try:
            rows = self._engine().api.containers(all=True, filters={"label": f"{LABEL}.owner={self.owner}"})
        except (DockerException, OSError, SandboxUnavailable):
            return []
        return [row["Id"] for row in rows]

    def close(self) -> None:
        for container_id in self.owned():
            self._remove_id(container_id)
        if self._client is not None:
            self._client.close()
            self._client = None


def _recv_exact(raw: socket.socket, n: int, deadline: float) -> bytes | None:
    """n bytes, or None at a clean end of stream; TimeoutError past the deadline."""
    chunks: list[bytes] = []
    while n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        raw.settimeout(left)
        try:
            chunk = raw.recv(min(n, 1 << 16))
        except TimeoutError:
            raise TimeoutError from None
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _where() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def _short(exc: BaseException) -> str:
    if isinstance(exc, APIError) and exc.explanation:
        return str(exc.explanation)[:300]
    return str(exc)[:300]

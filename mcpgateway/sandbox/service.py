"""The sandbox policy: which container a call runs in, what it starts with, what it returns.

Two modes (`SandboxConfig.mode`):

- `execution` (default): every call gets a fresh container, taken from a small pool of
  started ones (network-less calls) or started for it. The caller's workspace lives here,
  as a tar archive per session: it is unpacked into the container before the code runs
  and packed up again afterwards, so files persist between calls while no process,
  temporary file or kernel state does. The container is removed after every call. The
  archive is also kept on disk under `state_dir` (`workspaces.WorkspaceStore`), so a
  restarted server continues the session's workspace until it has been idle `idle_s`.
- `session`: one container per caller session (a pipeline run, an API key), reused for
  its calls and removed after `idle_s` without use; the workspace lives in it.

Sessions come from the gateway (`_meta`), so one run's files are never another's.
Everything here is blocking; the MCP server calls it from worker threads.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tarfile
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from mcpgateway.sandbox.archives import (
    merge_archive,
    parse_frames,
    read_member,
    split_output,
    workspace_path,
)
from mcpgateway.sandbox.backends import Backend, Box, RawExecution, get_backend
from mcpgateway.sandbox.config import SandboxConfig
from mcpgateway.sandbox.errors import SandboxError, SandboxUnavailable
from mcpgateway.sandbox.workspaces import WorkspaceStore, archive_files

log = logging.getLogger(__name__)

GRACE_S = 5.0  # host-side allowance past the code's time limit (unpacking, packing up)


@dataclass(slots=True)
class Session:
    key: str
    network: bool
    lock: threading.Lock = field(default_factory=threading.Lock)
    last_used: float = field(default_factory=time.monotonic)
    archive: bytes = b""  # execution mode: the workspace between calls
    files: dict[str, int] = field(default_factory=dict)
    box: Box | None = None  # session mode: the session's container
    loaded: bool = False  # execution mode: the saved workspace has been read from disk


class Sandbox:
    def __init__(self, config: SandboxConfig, backend: Backend | None = None):
        self.config = config
        self.backend = backend or get_backend(config)
        self._sessions: dict[tuple[str, bool], Session] = {}
        self._sessions_lock = threading.Lock()
        self._pool: deque[Box] = deque()
        self._pool_lock = threading.Lock()
        self._refill = threading.Event()
        self._closed = threading.Event()
        self._removals = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sandbox-remove")
        self._maintainer: threading.Thread | None = None
        self._warm = False  # the pool is filled once this sandbox has been used
        self._store = (WorkspaceStore(config.state_dir, config.idle_s)
                       if config.mode == "execution" and config.state_dir else None)

    # -- lifecycle ----------------------------------------------------------------------

    def start_maintenance(self, every_s: float = 30.0) -> None:
        """Reap leftovers now, then keep the pool filled and idle sessions dropped."""
        try:
            reaped = self.backend.reap()
            if reaped:
                log.info("removed %d leftover sandbox containers", reaped)
        except SandboxUnavailable:
            pass
        self._expire_saved()
        self._maintainer = threading.Thread(target=self._maintain, args=(every_s,), name="sandbox-maintain", daemon=True)
        self._maintainer.start()

    def _maintain(self, every_s: float) -> None:
        next_sweep = time.monotonic() + every_s
        while not self._closed.is_set():
            self._refill.wait(timeout=1.0)
            self._refill.clear()
            if self._closed.is_set():
                return
            try:
                self._fill_pool()
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + every_s
                    self.drop_idle()
                    self.backend.reap()
            except SandboxUnavailable:
                time.sleep(min(every_s, 5.0))  # no engine for now: try again later
            except Exception:
                log.exception("sandbox maintenance failed")

    def _fill_pool(self) -> None:
        if self.config.mode != "execution" or not self._warm:
            return
        while len(self._pool) < self.config.pool and not self._closed.is_set():
            box = self.backend.start(network=False, session="pool")
            with self._pool_lock:
                self._pool.append(box)
        horizon = time.time() - self.config.lifetime_s / 2
        with self._pool_lock:
            old = [b for b in self._pool if b.created < horizon]
            for box in old:
                self._pool.remove(box)
        for box in old:
            self._discard(box)

    def close(self) -> None:
        """Remove every container this sandbox made (pool, sessions, anything in flight)."""
        self._closed.set()
        self._refill.set()
        with self._pool_lock:
            boxes = list(self._pool)
            self._pool.clear()
        with self._sessions_lock:
            boxes += [s.box for s in self._sessions.values() if s.box is not None]
            self._sessions.clear()
        for box in boxes:
            self.backend.remove(box)
        self._removals.shutdown(wait=True)
        self.backend.close()

    def drop_idle(self) -> int:
        cutoff = time.monotonic() - self.config.idle_s
        with self._sessions_lock:
            idle = [k for k, s in self._sessions.items() if s.last_used < cutoff and not s.lock.locked()]
            # (a caller holding a session found before this drop re-checks it under its lock)
            dropped = [self._sessions.pop(k) for k in idle]
        for session in dropped:
            if session.box is not None:
                self._discard(session.box)
        self._expire_saved()
        return len(dropped)

    def _expire_saved(self) -> None:
        if self._store is None:
            return
        try:
            self._store.expire()
        except OSError:
            log.exception("expiring saved sandbox workspaces failed")

    def _save(self, s: Session) -> None:
        """Keep the session's workspace on disk (a failure leaves it in memory only)."""
        if self._store is None:
            return
        try:
            self._store.save(s.key, s.network, s.archive)
        except OSError:
            log.exception("saving the workspace of a sandbox session failed")

    def _restore(self, s: Session) -> None:
        """A session new to this process continues the workspace saved on disk, if any
        (a restarted server); an unreadable one is dropped with a log line."""
        s.loaded = True
        try:
            archive = self._store.load(s.key, s.network) if self._store is not None else b""
            s.archive, s.files = archive, archive_files(archive)
        except (OSError, tarfile.TarError):
            log.exception("the saved workspace of a sandbox session could not be read; starting empty")
            s.archive, s.files = b"", {}

    def _touch(self, s: Session) -> None:
        if self._store is not None:
            with contextlib.suppress(OSError):
                self._store.touch(s.key, s.network)

    # -- the tools ------------------------------------------------------------------------

    def run_python(self, session: str, network: bool, code: str, *, stdin: str = "",
                   files: dict[str, str] | None = None, timeout_s: float | None = None) -> dict[str, Any]:
        if not code.strip():
            raise SandboxError("code is empty")
        return self._run(session, network, ["python3", "-u", "{script}"], code, ".py", stdin, files, timeout_s)

    def run_shell(self, session: str, network: bool, command: str, *, stdin: str = "",
                  files: dict[str, str] | None = None, timeout_s: float | None = None) -> dict[str, Any]:
        if not command.strip():
            raise SandboxError("command is empty")
        return self._run(session, network, ["sh", "{script}"], command, ".sh", stdin, files, timeout_s)

    def put_file(self, session: str, network: bool, path: str, content: bytes) -> dict[str, Any]:
        name = workspace_path(path)
        if len(content) > self.config.max_file_bytes:
            raise SandboxError(f"{name}: {len(content)} bytes is over the {self.config.max_file_bytes}-byte file limit")
        with self._locked(session, network) as s:
            if self.config.mode == "execution":
                archive = merge_archive(s.archive, {name: content})
                if len(archive) > self.config.workspace_mb * 1024 * 1024:
                    raise SandboxError(f"the workspace would exceed its {self.config.workspace_mb} MB limit")
                s.archive = archive
                s.files[name] = len(content)
                self._save(s)
            else:
                result = self._in_session_box(s, {"argv": []}, merge_archive(b"", {name: content}))[0]
                if result.get("error"):
                    raise SandboxError(result["error"])
                s.files = result.get("files", {})
            s.last_used = time.monotonic()
            return {"path": name, "size": len(content), "workspace_files": len(s.files)}

    def get_file(self, session: str, network: bool, path: str) -> bytes:
        name = workspace_path(path)
        with self._locked(session, network) as s:
            s.last_used = time.monotonic()
            if self.config.mode == "execution":
                self._touch(s)
                content = read_member(s.archive, name)
            else:
                # The runner checks the size before packing: a huge (sparse) file once filled the
                # stream past the host's cap, and the container, workspace and all, was removed.
                result, archive = self._in_session_box(
                    s, {"argv": [], "capture": [name], "max_file": self.config.max_file_bytes}, b"")
                too_large = result.get("too_large", {}).get(name)
                if too_large is not None:
                    raise SandboxError(f"{name}: {too_large} bytes is over the {self.config.max_file_bytes}-byte file limit")
                content = read_member(archive, name) if name not in result.get("missing", [name]) else None
        if content is None:
            raise SandboxError(f"{name}: no such file in the workspace")
        if len(content) > self.config.max_file_bytes:
            raise SandboxError(f"{name}: {len(content)} bytes is over the {self.config.max_file_bytes}-byte file limit")
        return content

    def list_files(self, session: str, network: bool) -> dict[str, int]:
        with self._locked(session, network) as s:
            s.last_used = time.monotonic()
            if self.config.mode == "session":
                result = self._in_session_box(s, {"argv": []}, b"")[0]
                s.files = result.get("files", {})
            else:
                self._touch(s)
            return {shown_name(name): size for name, size in sorted(s.files.items())}

    # -- running --------------------------------------------------------------------------

    def _run(self, session: str, network: bool, argv: list[str], script: str, suffix: str, stdin: str,
             files: dict[str, str] | None, timeout_s: float | None) -> dict[str, Any]:
        timeout = self.config.timeout_s if timeout_s is None else float(timeout_s)
        if not 0 < timeout <= self.config.max_timeout_s:
            raise SandboxError(f"timeout_s must be between 0 and {self.config.max_timeout_s:g}")
        extra = {workspace_path(k): v.encode() for k, v in (files or {}).items()}
        self._check_request(script, stdin, extra)
        header = {"argv": argv, "script": script, "script_suffix": suffix, "stdin": stdin, "timeout": timeout,
                  "max_output": self.config.output_bytes}
        started = time.perf_counter()
        with self._locked(session, network) as s:
            if self.config.mode == "execution":
                archive = merge_archive(s.archive, extra) if extra else s.archive
                if len(archive) > self._workspace_bytes():
                    raise SandboxError(f"the workspace would exceed its {self.config.workspace_mb} MB limit")
                result, raw = self._in_fresh_box(s, header, archive, timeout)
            else:
                result, raw = self._in_session_box(s, header, merge_archive(b"", extra) if extra else b"", timeout)
            s.last_used = time.monotonic()
        return self._report(result, raw, timeout, network, time.perf_counter() - started)

    def _check_request(self, script: str, stdin: str, extra: dict[str, bytes]) -> None:
        """Refuse, naming the limit, what could never fit in the container (it failed inside
        with a bare "No space left on device" or no result at all)."""
        limit = self.config.max_file_bytes
        code_limit = min(limit, self.config.tmp_mb * 1024 * 1024)  # the code is written to /tmp
        code_size = len(script.encode("utf-8", "surrogatepass"))
        if code_size > code_limit:
            raise SandboxError(f"the code is {code_size} bytes, over the sandbox's {code_limit}-byte limit for code")
        stdin_size = len(stdin.encode("utf-8", "surrogatepass"))
        if stdin_size > limit:
            raise SandboxError(f"stdin is {stdin_size} bytes, over the sandbox's {limit}-byte limit")
        for name, content in extra.items():
            if len(content) > limit:
                raise SandboxError(f"{name}: {len(content)} bytes is over the {limit}-byte file limit")
        if sum(len(c) for c in extra.values()) > self._workspace_bytes():
            raise SandboxError(f"the files would exceed the workspace's {self.config.workspace_mb} MB limit")

    def _workspace_bytes(self) -> int:
        return self.config.workspace_mb * 1024 * 1024

    def _in_fresh_box(self, s: Session, header: dict[str, Any], archive: bytes,
                      timeout: float) -> tuple[dict[str, Any], RawExecution]:
        box = self._take(s.network, s.key)
        try:
            # The runner packs the workspace only if its files fit the cap: a sparse file over it
            # was saved, and no later call could unpack the workspace again.
            header = {**header, "restore": len(archive), "capture": "all", "max_workspace": self._workspace_bytes()}
            raw = self.backend.execute(box, _payload(header, archive), timeout_s=timeout + GRACE_S,
                                       max_bytes=self._max_bytes())
        finally:
            self._discard(box)
        result, captured = parse_frames(raw.stdout)
        if "files" in result and not result.get("error") and not result.get("workspace_over") and not raw.killed:
            s.archive = captured
            s.files = result["files"]
            self._save(s)
        else:
            self._touch(s)
        return result, raw

    def _in_session_box(self, s: Session, header: dict[str, Any], archive: bytes,
                        timeout: float = 30.0) -> tuple[dict[str, Any], RawExecution | bytes]:
        # A container near the end of its lifetime would be reaped mid-call: replace it first.
        if s.box is not None and s.box.created < time.time() - (self.config.lifetime_s - self.config.max_timeout_s - GRACE_S):
            self._discard(s.box)
            s.box, s.files = None, {}
        if s.box is None:
            s.box = self.backend.start(network=s.network, session=s.key)
        header = {**header, "restore": len(archive)}
        try:
            raw = self.backend.execute(s.box, _payload(header, archive), timeout_s=timeout + GRACE_S,
                                       max_bytes=self._max_bytes())
        except SandboxUnavailable:
            self._discard(s.box)  # gone or broken: the next call starts a fresh one
            s.box, s.files = None, {}
            raise
        result, captured = parse_frames(raw.stdout)
        if raw.killed or not result:
            # The host had to kill the container (or the runner died): the session starts over.
            self._discard(s.box)
            s.box = None
            s.files = {}
            result["session_reset"] = True
        if header.get("capture"):
            return result, captured
        return result, raw

    def _take(self, network: bool, session: str) -> Box:
        if not network and self.config.pool:
            self._warm = True
            with self._pool_lock:
                box = self._pool.popleft() if self._pool else None
            self._refill.set()
            if box is not None:
                return box
        return self.backend.start(network=network, session=session)

    def _discard(self, box: Box) -> None:
        try:
            self._removals.submit(self.backend.remove, box)
        except RuntimeError:  # shutting down: remove it here
            self.backend.remove(box)

    def _session(self, key: str, network: bool) -> Session:
        self.backend.check()
        with self._sessions_lock:
            s = self._sessions.get((key, network))
            if s is None:
                s = self._sessions[(key, network)] = Session(key, network)
            return s

    @contextlib.contextmanager
    def _locked(self, key: str, network: bool):
        """The session, locked — and still the registered one (drop_idle may have dropped the
        one we found while we waited for its lock)."""
        while True:
            s = self._session(key, network)
            with s.lock:
                if self._sessions.get((key, network)) is s:
                    if self._store is not None and not s.loaded:
                        self._restore(s)
                    yield s
                    return

    def _max_bytes(self) -> int:
        return self.config.output_bytes * 2 + self._workspace_bytes() * 2 + self.config.max_file_bytes + (1 << 20)

    def _report(self, result: dict[str, Any], raw: RawExecution, timeout: float, network: bool,
                elapsed: float) -> dict[str, Any]:
        out, err = split_output(raw.stdout)
        timed_out = bool(result.get("timed_out")) or raw.killed == "timeout"
        truncated = bool(result.get("output_truncated")) or raw.killed == "output"
        notes = []
        if timed_out:
            notes.append(f"Killed after the {timeout:g} s time limit.")
        if truncated:
            notes.append(f"Output passed the {self.config.output_bytes}-byte limit: it was cut and the process killed.")
        if result.get("oom_killed"):
            notes.append(f"A process was killed for passing the {self.config.memory_mb} MB memory limit.")
        if result.get("workspace_over"):
            notes.append(f"The workspace's files came to {result.get('workspace_bytes', 0)} bytes, over its "
                         f"{self.config.workspace_mb} MB limit (a sparse file counts at its full size): this call's "
                         "changes were not kept; the next call starts from the workspace as it was before it.")
        if result.get("session_reset"):
            notes.append("The session's container was removed; the next call starts with an empty workspace.")
        if result.get("error"):
            notes.append(result["error"])
        if not result.get("files") and "exit_code" not in result and not raw.killed:
            notes.append("The sandbox runner stopped without a result: " + raw.stderr.decode(errors="replace")[-500:])
        files = result.get("files", {})
        return {
            "exit_code": result.get("exit_code"),
            "stdout": out.decode(errors="replace"),
            "stderr": err.decode(errors="replace"),
            "timed_out": timed_out,
            "output_truncated": truncated,
            "oom_killed": bool(result.get("oom_killed")),
            "signal": result.get("signal"),
            "duration_ms": round(elapsed * 1000, 1),
            "files_changed": [{"path": shown_name(p), "size": files.get(p, 0)} for p in result.get("changed", [])],
            "files_deleted": [shown_name(p) for p in result.get("deleted", [])],
            "note": " ".join(notes),
            "sandbox": {"mode": self.config.mode, "network": network, "image": self.config.image,
                        "runtime": self.config.runtime or "default"},
        }


def shown_name(name: str) -> str:
    """A file name as the caller sees it: one that is not UTF-8 (the runner sends its bytes
    as lone surrogates) with those bytes written `\\xe9`, instead of failing the whole answer
    after the code had run."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        pass
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate no file system byte gives
        return name.encode("utf-8", "backslashreplace").decode("utf-8")


# -- the wire and archives ------------------------------------------------------------


def _payload(header: dict[str, Any], archive: bytes) -> bytes:
    return json.dumps(header).encode() + b"\n" + archive

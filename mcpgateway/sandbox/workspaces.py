"""Execution-mode workspaces on disk, so a restarted sandbox server finds them.

One tar archive per session under `<state_dir>/workspaces/`, named by a digest of the
session key and its network flag (a key never becomes a path). Each write replaces the
file atomically; each use touches it, so its modification time is the session's last use.
A workspace unused for the session's idle time (`idle_s`) is expired: not loaded again,
and removed by the maintenance sweep. The directory is private to the server's user.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import tarfile
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)


class WorkspaceStore:
    def __init__(self, state_dir: str, ttl_s: float):
        self.root = Path(state_dir).resolve() / "workspaces"
        self.ttl_s = ttl_s

    def path(self, key: str, network: bool) -> Path:
        digest = hashlib.sha256(f"{int(network)}:{key}".encode()).hexdigest()[:40]
        return self.root / f"{digest}.tar"

    def load(self, key: str, network: bool) -> bytes:
        """The session's saved workspace (empty when there is none or it expired)."""
        path = self.path(key, network)
        try:
            if path.stat().st_mtime < time.time() - self.ttl_s:
                path.unlink(missing_ok=True)
                return b""
            return path.read_bytes()
        except FileNotFoundError:
            return b""

    def save(self, key: str, network: bool, archive: bytes) -> None:
        """Replace the session's saved workspace (an empty workspace removes it)."""
        path = self.path(key, network)
        if not archive:
            path.unlink(missing_ok=True)
            return
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, temporary = tempfile.mkstemp(dir=self.root, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as sink:
                sink.write(archive)
                sink.flush()
                os.fsync(sink.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def touch(self, key: str, network: bool) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.utime(self.path(key, network))

    def expire(self) -> int:
        """Remove workspaces (and leftover partial writes) unused for longer than the TTL."""
        cutoff = time.time() - self.ttl_s
        removed = 0
        try:
            entries = list(self.root.iterdir())
        except FileNotFoundError:
            return 0
        for entry in entries:
            if entry.suffix not in (".tar", ".part"):
                continue
            try:
                if entry.stat().st_mtime < cutoff:
                    entry.unlink()
                    removed += entry.suffix == ".tar"
            except FileNotFoundError:
                continue
        if removed:
            log.info("removed %d expired sandbox workspace(s)", removed)
        return removed


def archive_files(archive: bytes) -> dict[str, int]:
    """{path: size} of the regular files in a workspace archive."""
    if not archive:
        return {}
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
        return {m.name: m.size for m in tar.getmembers() if m.isfile()}

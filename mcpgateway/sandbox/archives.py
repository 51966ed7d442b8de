"""The runner's wire format and workspace archives, as the host side reads and writes them.

Frames are `kind (1 byte) | length (4 bytes, big-endian) | payload` (see `runner.py`);
workspaces travel as plain tar archives of regular files and directories.
"""

from __future__ import annotations

import io
import json
import posixpath
import struct
import tarfile
import time
from typing import Any

from mcpgateway.sandbox.errors import SandboxError

MAX_PATH = 255


def iter_frames(data: bytes):
    at = 0
    while at + 5 <= len(data):
        kind = data[at:at + 1]
        size = struct.unpack(">I", data[at + 1:at + 5])[0]
        yield kind, data[at + 5:at + 5 + size]
        at += 5 + size


def parse_frames(data: bytes) -> tuple[dict[str, Any], bytes]:
    """The runner's result (empty if it never wrote one) and the tar archive it sent."""
    result: dict[str, Any] = {}
    archive = []
    for kind, payload in iter_frames(data):
        if kind == b"r":
            result = json.loads(payload)
        elif kind == b"t":
            archive.append(payload)
    return result, b"".join(archive)


def split_output(data: bytes) -> tuple[bytes, bytes]:
    out, err = [], []
    for kind, payload in iter_frames(data):
        if kind == b"o":
            out.append(payload)
        elif kind == b"e":
            err.append(payload)
    return b"".join(out), b"".join(err)


def workspace_path(path: str) -> str:
    """A workspace-relative file name; SandboxError for anything that would leave it."""
    if not isinstance(path, str) or not path.strip() or len(path) > MAX_PATH or "\0" in path:
        raise SandboxError("a path must be 1 to 255 characters")
    trimmed = path.strip()
    if trimmed.startswith("/workspace/"):
        trimmed = trimmed[len("/workspace/"):]
    if trimmed.startswith("/"):
        raise SandboxError(f"{path}: only paths inside the workspace (/workspace) are allowed")
    name = posixpath.normpath(trimmed)
    if name in ("", ".") or name == ".." or name.startswith("../"):
        raise SandboxError(f"{path}: only paths inside the workspace (/workspace) are allowed")
    return name


def _ancestors(name: str) -> list[str]:
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def check_no_conflict(members: list[tarfile.TarInfo], files: dict[str, bytes]) -> None:
    """Refuse a file whose name is a directory of the workspace, or which would sit under a
    file: a workspace archive holding both `a` and `a/b` could never be unpacked again, so
    every later call of the run failed."""
    kept_files = {m.name for m in members if m.isfile()}
    dirs = {m.name for m in members if m.isdir()} | {a for m in members for a in _ancestors(m.name)}
    for name in files:
        if name in dirs:
            raise SandboxError(f"{name}: is a directory in the workspace")
        blocking = next((a for a in _ancestors(name) if a in kept_files and a not in files), None)
        if blocking is not None:
            raise SandboxError(f"{name}: {blocking} is a file in the workspace, not a directory")


def merge_archive(archive: bytes, files: dict[str, bytes]) -> bytes:
    """A tar of `archive`'s entries with `files` added or replacing files of the same name
    (SandboxError if one would replace a directory or go under a file)."""
    sink = io.BytesIO()
    with tarfile.open(fileobj=sink, mode="w") as out:
        if archive:
            with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as old:
                check_no_conflict(old.getmembers(), files)
                for member in old.getmembers():
                    if member.name in files or not (member.isfile() or member.isdir()):
                        continue
                    out.addfile(member, old.extractfile(member) if member.isfile() else None)
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o644
            info.mtime = int(time.time())
            out.addfile(info, io.BytesIO(content))
    return sink.getvalue()


def read_member(archive: bytes, name: str) -> bytes | None:
    if not archive:
        return None
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
        try:
            member = tar.getmember(name)
        except KeyError:
            return None
        source = tar.extractfile(member) if member.isfile() else None
        return source.read() if source is not None else None

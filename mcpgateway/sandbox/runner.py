"""The program that runs inside a sandbox container, once per execution.

It is sent as source text (`python3 -I -S -c <this file>`) through `docker exec`, so the
image needs nothing of ours. Standard library only; it must run on the image's Python
(3.9 or newer). The host talks to it over the exec's stdin and stdout:

stdin:  one JSON header line, then `restore` bytes of a tar archive to unpack into the
        workspace (files to put, or a whole workspace to restore).
stdout: frames of `kind (1 byte) | length (4 bytes, big-endian) | payload`:
        `o` / `e` a chunk of the command's stdout / stderr, `t` a chunk of the tar
        archive asked for with `capture`, `r` the result as JSON (always last).

Header fields: `argv` (the command, or empty to only move files), `stdin` (text for the
command), `timeout` (seconds), `max_output` (bytes of stdout + stderr to keep; past it
the command is killed), `restore` (tar length), `capture` (`"all"`: the whole workspace
as tar, a list of paths: those files, anything else: none), `clear` (empty the
workspace first).

The runner makes itself non-dumpable so code running as the same user cannot write into
its stdout through /proc, runs the command in its own process group, and afterwards
kills every process the sandbox user still has (`kill(-1)`), so nothing outlives the
execution. Archives hold only regular files and directories; links are skipped on the
way out and refused on the way in.
"""

import ctypes
import json
import os
import selectors
import signal
import stat
import struct
import subprocess
import sys
import tarfile
import threading
import time

WORKSPACE = "/workspace"
CHUNK = 65536
EXIT_GRACE_S = 0.25  # output still read after the command itself ended
out = sys.stdout.buffer


def frame(kind, payload):
    out.write(kind + struct.pack(">I", len(payload)) + payload)


def read_exact(stream, n):
    chunks = []
    while n > 0:
        chunk = stream.read(min(n, CHUNK))
        if not chunk:
            raise ValueError("archive ended early")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def inside(path):
    """The absolute path of a workspace-relative name, or ValueError if it leaves the workspace."""
    name = os.path.normpath(path.lstrip("/"))
    if name in ("", ".") or name.startswith(".."):
        raise ValueError(f"path {path!r} is outside the workspace")
    return os.path.join(WORKSPACE, name)


def restore(data):
    import io

    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
        for member in archive.getmembers():
            target = inside(member.name)
            parent = os.path.dirname(target)
            while parent != WORKSPACE and not os.path.lexists(parent):
                parent = os.path.dirname(parent)
            if parent != WORKSPACE and not os.path.isdir(parent):
                raise ValueError(f"{member.name}: {os.path.relpath(parent, WORKSPACE)} is a file in the workspace, "
                                 "not a directory")
            if member.isdir():
                os.makedirs(target, exist_ok=True)
            elif member.isfile():
                if os.path.isdir(target) and not os.path.islink(target):
                    raise ValueError(f"{member.name}: is a directory in the workspace")
                os.makedirs(os.path.dirname(target), exist_ok=True)
                if os.path.islink(target):
                    os.unlink(target)
                source = archive.extractfile(member)
                with open(target, "wb") as sink:
                    sink.write(source.read())
                os.chmod(target, member.mode & 0o755)
            else:
                raise ValueError(f"{member.name}: only regular files and directories may be put")


def clear_workspace():
    for entry in os.listdir(WORKSPACE):
        path = os.path.join(WORKSPACE, entry)
        if os.path.isdir(path) and not os.path.islink(path):
            for root, dirs, files in os.walk(path, topdown=False):
                for name in files + dirs:
                    full = os.path.join(root, name)
                    (os.rmdir if os.path.isdir(full) and not os.path.islink(full) else os.unlink)(full)
            os.rmdir(path)
        else:
            os.unlink(path)


def listing():
    """{relative path: [size, mtime_ns]} of the regular files in the workspace."""
    found = {}
    for root, _dirs, files in os.walk(WORKSPACE):
        for name in files:
            full = os.path.join(root, name)
            try:
                info = os.lstat(full)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                found[os.path.relpath(full, WORKSPACE)] = [info.st_size, info.st_mtime_ns]
    return found


class FrameWriter:
    """A file-like sink that sends what tarfile writes as `t` frames."""

    def write(self, data):
        if data:
            frame(b"t", bytes(data))
        return len(data)

    def flush(self):
        pass


def capture(what, files):
    names = sorted(files) if what == "all" else [os.path.normpath(p.lstrip("/")) for p in what]
    missing = [n for n in names if n not in files]
    with tarfile.open(fileobj=FrameWriter(), mode="w|") as archive:
        for name in names:
            if name in files:
                archive.add(os.path.join(WORKSPACE, name), arcname=name, recursive=False)
    return missing


def run(header, result):
    argv = header.get("argv") or []
    if not argv:
        return
    script = header.get("script")
    if script is not None:
        # The code to run goes to a file outside the workspace, so it neither needs an
        # argument-length limit nor shows up among the files the code produced.
        path = "/tmp/main" + header.get("script_suffix", "")
        with open(path, "w", encoding="utf-8") as sink:
            sink.write(script)
        argv = [path if part == "{script}" else part for part in argv]
    limit = int(header.get("max_output", 1 << 20))
    timeout = float(header.get("timeout", 30))
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": WORKSPACE, "LANG": "C.UTF-8", "TMPDIR": "/tmp",
           "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
    started = time.monotonic()
    try:
        child = subprocess.Popen(argv, cwd=WORKSPACE, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        result.update(exit_code=127, error=f"could not start {argv[0]}: {exc.strerror}")
        return
    text = (header.get("stdin") or "").encode()

    def feed():
        # From a thread: written before the output is read, more than a pipe's worth of stdin
        # deadlocked a filter such as `cat` (its stdout full, it stopped reading stdin).
        try:
            child.stdin.write(text)
            child.stdin.close()
        except OSError:
            pass

    threading.Thread(target=feed, daemon=True).start()
    selector = selectors.DefaultSelector()
    selector.register(child.stdout, selectors.EVENT_READ, b"o")
    selector.register(child.stderr, selectors.EVENT_READ, b"e")
    sent = 0
    open_streams = 2
    exited_at = None
    while open_streams:
        now = time.monotonic()
        left = started + timeout - now
        if left <= 0:
            result["timed_out"] = True
            break
        if exited_at is None and child.poll() is not None:
            exited_at = now
        if exited_at is not None and now - exited_at > EXIT_GRACE_S:
            # The command ended, but a process it left in the background holds its output
            # open: what was written is read; the rest is cut, not waited for until the limit.
            break
        for key, _ in selector.select(min(left, 0.05 if exited_at is not None else 0.5)):
            chunk = os.read(key.fileobj.fileno(), CHUNK)
            if not chunk:
                selector.unregister(key.fileobj)
                open_streams -= 1
                continue
            room = limit - sent
            if room > 0:
                frame(key.data, chunk[:room])
            sent += len(chunk)
            if sent > limit:
                result["output_truncated"] = True
                open_streams = 0
                break
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        code = child.wait(timeout=max(0.1, started + timeout - time.monotonic()))
    except subprocess.TimeoutExpired:
        result["timed_out"] = True
        child.kill()
        code = child.wait()
    result["exit_code"] = code if code >= 0 else 128 - code
    if code < 0:
        result["signal"] = signal.Signals(-code).name
    result["duration_s"] = round(time.monotonic() - started, 4)


def oom_kills():
    """How many times the container's memory limit killed a process (cgroup v2 or v1), or None."""
    for path in ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"):
        try:
            with open(path) as source:
                for line in source:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            continue
    return None


def main():
    try:
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 0: /proc/<this pid> is no longer ours to write
    except (OSError, AttributeError):
        pass
    stdin = sys.stdin.buffer
    header = json.loads(stdin.readline())
    result = {"exit_code": None, "timed_out": False, "output_truncated": False}
    try:
        if header.get("clear"):
            clear_workspace()
        size = int(header.get("restore", 0))
        if size:
            restore(read_exact(stdin, size))
        before = listing()
        kills = oom_kills()
        run(header, result)
        if kills is not None and (oom_kills() or 0) > kills:
            result["oom_killed"] = True
        # Nothing the command started may outlive it: kill every process of this user
        # except this runner (and the container's init, which kill(-1) never signals).
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
        after = listing()
        result["files"] = {name: meta[0] for name, meta in after.items()}
        result["changed"] = sorted(n for n, meta in after.items() if before.get(n) != meta)
        result["deleted"] = sorted(n for n in before if n not in after)
        what = header.get("capture")
        if what == "all" or isinstance(what, list):
            result["missing"] = capture(what, after)
    except (ValueError, OSError, tarfile.TarError) as exc:
        result["error"] = str(exc)
    frame(b"r", json.dumps(result).encode())
    out.flush()


main()

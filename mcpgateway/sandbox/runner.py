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
as tar, a list of paths: those files, anything else: none), `max_workspace` (bytes: a
workspace whose files' sizes sum to more is not packed; the result says
`workspace_over`), `max_file` (bytes: a file asked for by name that is larger is not
packed; the result names it under `too_large`), `clear` (empty the workspace first).

The runner makes itself non-dumpable so code running as the same user cannot write into
its stdout through /proc, runs the command in its own process group, and afterwards
kills every process the sandbox user still has (`kill(-1)`), so nothing outlives the
execution. The code to run is written to a fresh private directory under /tmp for each
execution and removed afterwards (a fixed name let one run's `chmod 0` or symlink break
every later run of a session). The command runs until it exits or its time limit passes,
whether or not it keeps its stdout and stderr open.

Archives hold only regular files and directories: symbolic links are skipped on the way
out and refused on the way in, and a hard link goes out as a file of its own (a link
member could never be restored: every later call of the session failed).
"""

import ctypes
import errno
import json
import os
import selectors
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tarfile
import tempfile
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


def add_regular(archive, name):
    """Put one workspace file into the archive as a regular file, whatever links it has."""
    path = os.path.join(WORKSPACE, name)
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(path, flags)
    except PermissionError:  # the code took its own file's permissions away (`chmod 0`)
        os.chmod(path, stat.S_IMODE(os.lstat(path).st_mode) | stat.S_IRUSR)
        fd = os.open(path, flags)
    with os.fdopen(fd, "rb") as source:
        info = os.fstat(source.fileno())
        if not stat.S_ISREG(info.st_mode):
            return
        member = tarfile.TarInfo(name)
        member.size = info.st_size
        member.mode = stat.S_IMODE(info.st_mode)
        member.mtime = int(info.st_mtime)
        archive.addfile(member, source)


def capture(names, files):
    """Send `names` (those still in `files`) as a tar of regular files; the names that are not."""
    missing = [n for n in names if n not in files]
    with tarfile.open(fileobj=FrameWriter(), mode="w|") as archive:
        for name in names:
            if name in files:
                add_regular(archive, name)
    return missing


def capture_asked(header, files, result):
    """Pack what the header asks for, within its limits; a refusal is said in the result."""
    what = header.get("capture")
    if what == "all":
        total = sum(meta[0] for meta in files.values())
        result["workspace_bytes"] = total
        limit = header.get("max_workspace")
        if limit is not None and total > int(limit):
            result["workspace_over"] = True  # a sparse file counts at its full size, as it would be restored
            return
        result["missing"] = capture(sorted(files), files)
    elif isinstance(what, list):
        names = [os.path.normpath(p.lstrip("/")) for p in what]
        limit = header.get("max_file")
        if limit is not None:
            too_large = {n: files[n][0] for n in names if n in files and files[n][0] > int(limit)}
            if too_large:
                result["too_large"] = too_large
                names = [n for n in names if n not in too_large]
        result["missing"] = capture(names, files)


def write_script(script, suffix):
    """The code as a file in a new private directory under /tmp: (its path, the directory)."""
    scratch = tempfile.mkdtemp(prefix="run-", dir="/tmp")
    path = os.path.join(scratch, "main" + suffix)
    try:
        with open(path, "x", encoding="utf-8") as sink:
            sink.write(script)
    except BaseException:
        remove_scratch(scratch)
        raise
    return path, scratch


def remove_scratch(scratch):
    try:
        os.chmod(scratch, 0o700)  # the code (same user) may have taken its permissions away
    except OSError:
        pass
    shutil.rmtree(scratch, ignore_errors=True)


def run(header, result):
    argv = header.get("argv") or []
    if not argv:
        return
    script = header.get("script")
    scratch = None
    if script is not None:
        # The code to run goes to a file outside the workspace, so it neither needs an
        # argument-length limit nor shows up among the files the code produced.
        try:
            path, scratch = write_script(script, header.get("script_suffix", ""))
        except OSError as exc:
            full = " (/tmp is full: files left there by earlier calls count against it)" if exc.errno == errno.ENOSPC else ""
            result["error"] = f"could not write the code to /tmp: {exc.strerror}{full}"
            return
        argv = [path if part == "{script}" else part for part in argv]
    try:
        execute(argv, header, result)
    finally:
        if scratch is not None:
            remove_scratch(scratch)


def execute(argv, header, result):
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
    while not result["output_truncated"]:
        now = time.monotonic()
        left = started + timeout - now
        if left <= 0:
            result["timed_out"] = True
            break
        if exited_at is None and child.poll() is not None:
            exited_at = now
        if exited_at is not None and (not open_streams or now - exited_at > EXIT_GRACE_S):
            # The command ended. A process it left in the background may hold its output open:
            # what was written is read; the rest is cut, not waited for until the limit.
            break
        if not open_streams:
            # The command closed or redirected its own output but runs on (`exec >log 2>&1`):
            # it was killed at once. Wait for it, up to its time limit.
            try:
                child.wait(timeout=left)
            except subprocess.TimeoutExpired:
                pass
            continue
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
        capture_asked(header, after, result)
    except (ValueError, OSError, tarfile.TarError) as exc:
        result["error"] = str(exc)
    frame(b"r", json.dumps(result).encode())
    out.flush()


main()

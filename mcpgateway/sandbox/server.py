"""The built-in `sandbox` tool server: run agent code in hardened containers, never on the host.

Run as `python -m mcpgateway.sandbox.server [--image ...] [--mode execution|session] ...`
(stdio). The gateway starts it like any stdio server, so grants, rate limits, approvals
and the audit apply to its tools: `run_python`, `run_shell`, `put_file`, `get_file`,
`list_files` (seen by agents as `sandbox__run_python` and so on).

The gateway sends each call's session and the grant's network permission in the
request's `_meta` under `agentdeck.dev/sandbox` (only to servers marked to receive the
caller context); without it, calls share the session "default" and have no network.

Calls that change something (`run_python`, `run_shell`, `put_file`) honour the call's
idempotency key (`agentdeck.dev/idempotency-key` in `_meta`): a repeated key returns the
first result without running again, within this server process's lifetime
(`mcpgateway.sandbox.replay`). `get_file` and `list_files` are marked read-only.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import os
import signal
import sys
import threading
from functools import partial
from typing import Annotated, Any, Literal

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

from mcpgateway.idempotency import key_from_meta
from mcpgateway.sandbox.config import SandboxConfig
from mcpgateway.sandbox.errors import SandboxError, SandboxUnavailable
from mcpgateway.sandbox.replay import Replays
from mcpgateway.sandbox.service import Sandbox

META_KEY = "agentdeck.dev/sandbox"
log = logging.getLogger("agentdeck.sandbox")

Files = Annotated[dict[str, str] | None, Field(description="Text files to place in the workspace first: {path: content}.")]
Timeout = Annotated[float | None, Field(description="Seconds before the process is killed (default from the server).")]
Encoding = Annotated[Literal["utf-8", "base64"], Field(description="How `content` is encoded.")]


class FileInfo(BaseModel):
    path: str
    size: int


class SandboxInfo(BaseModel):
    mode: str
    network: bool
    image: str
    runtime: str


class Execution(BaseModel):
    """One execution: its output, exit code and what the limits did to it."""

    exit_code: int | None = Field(description="None when the process never finished (killed by the host).")
    stdout: str
    stderr: str
    timed_out: bool
    output_truncated: bool
    oom_killed: bool
    signal: str | None
    duration_ms: float
    files_changed: list[FileInfo]
    files_deleted: list[str]
    note: str = Field(description="What happened, in words, when a limit was hit.")
    sandbox: SandboxInfo


class FileWritten(BaseModel):
    path: str
    size: int
    workspace_files: int


class FileContent(BaseModel):
    path: str
    size: int
    encoding: str
    content: str


class FileList(BaseModel):
    files: list[FileInfo]


def caller(ctx: Context) -> tuple[str, bool]:
    """(session, network allowed) from the gateway's `_meta`; a private default otherwise."""
    meta = ctx.request_context.meta or {}
    found = meta.get(META_KEY) if isinstance(meta, dict) else None
    if not isinstance(found, dict):
        return "default", False
    session = found.get("session")
    return (session if isinstance(session, str) and session else "default"), found.get("network") is True


async def call(function, *args, **kwargs) -> Any:
    try:
        return await anyio.to_thread.run_sync(partial(function, *args, **kwargs))
    except SandboxUnavailable as exc:
        raise ToolError(f"Sandbox unavailable: {exc}") from None
    except SandboxError as exc:
        raise ToolError(str(exc)) from None


READ_ONLY = ToolAnnotations(readOnlyHint=True)


def idempotency_key(ctx: Context) -> str:
    return key_from_meta(ctx.request_context.meta)


def build_server(sandbox: Sandbox) -> MCPServer:
    replays = Replays()
    server = MCPServer("agentdeck-sandbox", instructions=(
        "Runs code in a fresh, locked-down container: no network unless granted, a size-capped /workspace that "
        "persists between calls of the same session, time, memory, process and output limits."))

    @server.tool()
    async def run_python(code: Annotated[str, Field(description="Python 3 source to run.")], ctx: Context,
                         stdin: str = "", files: Files = None, timeout_s: Timeout = None) -> Execution:
        """Run Python code in the sandbox. Returns stdout, stderr, exit_code, duration_ms, the files it changed,
        and whether it was killed (time, memory or output limit). The working directory is /workspace."""
        session, network = caller(ctx)
        return await replays.once(session, "run_python", idempotency_key(ctx), lambda: _execution(call(
            sandbox.run_python, session, network, code, stdin=stdin, files=files, timeout_s=timeout_s)))

    @server.tool()
    async def run_shell(command: Annotated[str, Field(description="A POSIX sh script.")], ctx: Context,
                        stdin: str = "", files: Files = None, timeout_s: Timeout = None) -> Execution:
        """Run a shell command in the sandbox (sh, in /workspace). Same result as run_python."""
        session, network = caller(ctx)
        return await replays.once(session, "run_shell", idempotency_key(ctx), lambda: _execution(call(
            sandbox.run_shell, session, network, command, stdin=stdin, files=files, timeout_s=timeout_s)))

    @server.tool()
    async def put_file(path: Annotated[str, Field(description="Path inside /workspace.")], content: str,
                       ctx: Context, encoding: Encoding = "utf-8") -> FileWritten:
        """Write a file into the sandbox workspace (kept for later calls of this session)."""
        session, network = caller(ctx)
        try:
            data = base64.b64decode(content, validate=True) if encoding == "base64" else content.encode()
        except (binascii.Error, ValueError):
            raise ToolError("content is not valid base64") from None
        return await replays.once(session, "put_file", idempotency_key(ctx), lambda: _written(call(
            sandbox.put_file, session, network, path, data)))

    @server.tool(annotations=READ_ONLY)
    async def get_file(path: Annotated[str, Field(description="Path inside /workspace.")], ctx: Context,
                       encoding: Encoding = "utf-8") -> FileContent:
        """Read a file from the sandbox workspace."""
        session, network = caller(ctx)
        data = await call(sandbox.get_file, session, network, path)
        if encoding == "base64":
            return FileContent(path=path, size=len(data), encoding="base64", content=base64.b64encode(data).decode())
        try:
            return FileContent(path=path, size=len(data), encoding="utf-8", content=data.decode())
        except UnicodeDecodeError:
            raise ToolError(f"{path} is not UTF-8 text; ask for encoding=base64") from None

    @server.tool(annotations=READ_ONLY)
    async def list_files(ctx: Context) -> FileList:
        """List the files in the sandbox workspace with their sizes."""
        session, network = caller(ctx)
        files = await call(sandbox.list_files, session, network)
        return FileList(files=[FileInfo(path=p, size=n) for p, n in files.items()])

    return server


async def _execution(pending: Any) -> Execution:
    return Execution(**await pending)


async def _written(pending: Any) -> FileWritten:
    return FileWritten(**await pending)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = SandboxConfig.from_argv(sys.argv[1:] if argv is None else argv)
    sandbox = Sandbox(config)
    closing = threading.Lock()

    def close() -> None:
        with closing:  # SIGTERM's thread and the end of stdin may both get here
            sandbox.close()

    def stop() -> None:
        """Remove this server's containers, then exit. Unwinding the event loop does not end the
        process: the stdio transport's reader thread (not a daemon) stays blocked on stdin, which
        the gateway keeps open, and the process hung after SIGTERM."""
        code = 0
        try:
            close()
        except Exception:
            log.exception("closing the sandbox failed")
            code = 1
        logging.shutdown()
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
        os._exit(code)

    signal.signal(signal.SIGTERM, lambda signum, frame: threading.Thread(target=stop, name="sandbox-stop",
                                                                         daemon=True).start())
    sandbox.start_maintenance()
    try:
        build_server(sandbox).run("stdio")
    finally:
        close()


if __name__ == "__main__":
    main()

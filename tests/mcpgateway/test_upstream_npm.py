"""The supervisor against the real npm reference servers, started with npx over stdio
(installed locally in node_modules; these speak the 2025-11-25 handshake era)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from mcpgateway.upstream import Supervisor, UpstreamConfig

ROOT = Path(__file__).resolve().parents[2]


def npx_config(name: str, *args: str) -> UpstreamConfig:
    return UpstreamConfig(name=name, transport="stdio", command="npx", args=("-y", *args), cwd=str(ROOT))


def test_it_discovers_and_calls_server_everything_and_server_filesystem(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello from the gateway\n")

    async def scenario() -> None:
        async with Supervisor() as sup:
            await sup.add(npx_config("everything", "@modelcontextprotocol/server-everything"))
            await sup.add(npx_config("files", "@modelcontextprotocol/server-filesystem", str(tmp_path)))
            everything = await sup.wait_up("everything", timeout=30)
            files = await sup.wait_up("files", timeout=30)
            assert everything.pid and files.pid

            discovery = sup.discovery("everything")
            assert discovery is not None
            assert discovery.protocol_version == "2025-11-25"
            assert "echo" in {tool.name for tool in discovery.tools}
            assert discovery.resources or discovery.resource_templates
            assert discovery.prompts
            echoed = await sup.call_tool("everything", "echo", {"message": "hi there"})
            assert echoed.is_error is False and "hi there" in echoed.text()

            discovery = sup.discovery("files")
            assert discovery is not None
            assert {"read_text_file", "list_directory"} <= {tool.name for tool in discovery.tools}
            assert discovery.resources == [] and discovery.prompts == []
            listing = await sup.call_tool("files", "list_directory", {"path": str(tmp_path)})
            assert "notes.txt" in listing.text()
            read = await sup.call_tool("files", "read_text_file", {"path": str(tmp_path / "notes.txt")})
            assert read.is_error is False and "hello from the gateway" in read.text()
            outside = await sup.call_tool("files", "read_text_file", {"path": "/etc/hostname"})
            assert outside.is_error is True
            json.dumps(read.content)  # plain JSON all the way down

    asyncio.run(scenario())

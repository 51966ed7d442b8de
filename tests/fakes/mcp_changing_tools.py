"""A stdio MCP server whose tool list is read from a JSON file at start: a test changes the
file and restarts the server to add tools or change their annotations.

    python -m tests.fakes.mcp_changing_tools tools.json
    tools.json: [{"name": "read", "description": "...", "annotations": {"destructiveHint": false}}, ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

server = MCPServer("changing-tools")


def _tool(name: str):
    def tool(text: str = "") -> str:
        return f"{name}: {text}"

    return tool


def main(path: str) -> None:
    for spec in json.loads(Path(path).read_text()):
        annotations = ToolAnnotations(**spec["annotations"]) if spec.get("annotations") else None
        server.add_tool(_tool(spec["name"]), name=spec["name"], description=spec.get("description", spec["name"]),
                        annotations=annotations)
    server.run("stdio")


if __name__ == "__main__":
    main(sys.argv[1])

"""Gateway fixtures: servers and tools in the catalogue, keys, and a principal per caller."""

from __future__ import annotations

import pytest

from mcpgateway.models import Tool, ToolServer, definition_hash
from mcpgateway.types import Principal


def catalogue_tool(server: ToolServer, name: str, description: str = "", schema: dict | None = None) -> Tool:
    """A tool as discovery would record it (first sight approved)."""
    schema = schema or {"type": "object", "properties": {}}
    definition = {"description": description, "input_schema": schema, "output_schema": None}
    digest = definition_hash(definition)
    return Tool.objects.create(server=server, name=name, description=description, input_schema=schema,
                               approved_hash=digest, approved_definition=definition, current_hash=digest)


@pytest.fixture
def files_server(db) -> ToolServer:
    server = ToolServer.objects.create(team_id=1, name="files", transport="stdio", command="true")
    for tool in ("read", "write", "delete"):
        catalogue_tool(server, tool, f"{tool} a file")
    return server


def agent(name: str, team_id: int = 1) -> Principal:
    return Principal(team_id=team_id, agent=name)


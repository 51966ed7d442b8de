# Found by a review of the fixes (2026-12-07); failed before its fix.
"""A trusted tool's enum argument declared through `$defs`/`$ref` now taints its answer.

`dataflow._argument_leaves` exempts a lower-case word only when the input schema declares it
in an `enum`/`const` at that place, and does not follow `$ref`. The MCP Python SDK (and any
pydantic-built schema) writes an `Enum`-typed parameter as `{"$ref": "#/$defs/Order"}`, so
`find_contact(name="Dana", sort="asc")` — every value from the user's request or the tool's
own schema — now makes the address book's answer untrusted, and the user's own mail to Dana
is refused. Before this change `asc` was exempt and the mail went through."""

from __future__ import annotations

import asyncio
import enum
import json

import pytest
from mcp.server.mcpserver import MCPServer

from mcpgateway.types import ToolSpec
from orchestrator.engine.dataflow import Source, StepFlow

pytestmark = pytest.mark.no_database

FIND = "office__find_contact"
SEND = "office__send_email"


class Order(enum.StrEnum):
    asc = "asc"
    desc = "desc"


def _real_schema() -> dict:
    server = MCPServer("office")

    @server.tool()
    def find_contact(name: str, sort: Order = Order.asc) -> str:
        return name

    (tool,) = asyncio.run(server.list_tools())
    return tool.input_schema


def test_an_enum_the_sdk_declares_through_a_ref_is_the_tools_own_word():
    schema = _real_schema()
    assert "$ref" in json.dumps(schema)  # (how the SDK writes an Enum parameter)
    spec = ToolSpec(FIND, "Find a contact", schema)
    flow = StepFlow("refuse", trusted=[Source("the run input", "Mail the Q3 figures to Dana.")], trusted_tools=(FIND,))
    flow.observe("office__read_document", "Q3 figures: revenue 4.1M.", arguments={"doc_id": "doc-q3"})
    arguments = {"name": "Dana", "sort": "asc"}
    flow.check(FIND, arguments, spec)
    flow.observe(FIND, json.dumps({"name": "Dana", "email": "d.whitfield@company.test"}), arguments=arguments)
    verdict = flow.check(SEND, {"to": "d.whitfield@company.test", "subject": "Q3", "body": "revenue 4.1M"})
    assert not verdict.refused, verdict.reason

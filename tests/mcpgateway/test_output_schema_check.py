"""The short path's plain case of the output-schema check (`session._needs_no_schema_check`):
whatever it passes, the SDK's own `ClientSession.validate_tool_result` passes too, and a result
the SDK refuses is always left to the SDK.

The SDK side is the real `ClientSession` method with the schema in its cache, exactly where
it keeps the schemas a listing brought; thousands of generated schema/content pairs, plus the
edge cases of JSON Schema's types, are asked of both."""

from __future__ import annotations

import asyncio
import math
import random

import anyio
import mcp_types as types
import pytest
from mcp.client.session import ClientSession

from mcpgateway.upstream.session import _needs_no_schema_check

TYPES = ["string", "integer", "number", "boolean", "null", "object", "array"]
VALUES = ["", "x", 0, 1, -7, 2**70, 1.0, 1.5, math.nan, math.inf, True, False, None, [], [1], {}, {"a": 1}]


def _sdk_passes(session: ClientSession, schema, content) -> bool:
    session._tool_output_schemas["tool"] = schema
    session._tool_output_validators.pop("tool", None)
    result = types.CallToolResult(content=[], structured_content=content)
    try:
        asyncio.run(session.validate_tool_result("tool", result))
    except RuntimeError:
        return False
    return True


def _ours(session: ClientSession, schema, content) -> bool:
    session._tool_output_schemas["tool"] = schema
    return _needs_no_schema_check(session, "tool", types.CallToolResult(content=[], structured_content=content))


@pytest.fixture
def session() -> ClientSession:
    # Streams it never uses: `validate_tool_result` only reads the session's schema cache here.
    send, receive = anyio.create_memory_object_stream(1)
    return ClientSession(receive, send)


def _schema(rng: random.Random):
    properties = {}
    for i in range(rng.randint(0, 4)):
        sub = {"type": rng.choice(TYPES)}
        if rng.random() < 0.3:
            sub["title"] = rng.choice(["T", 5])
        if rng.random() < 0.1:
            sub["minimum"] = 3
        properties[f"p{i}"] = sub if rng.random() > 0.05 else True
    schema = {"type": rng.choice(["object"] * 8 + ["array", "string"]), "properties": properties,
              "required": rng.sample([*sorted(properties), "extra"], k=rng.randint(0, len(properties)))}
    if rng.random() < 0.1:
        schema["additionalProperties"] = False
    if rng.random() < 0.05:
        schema["required"] = schema["required"] * 2
    return schema


def _content(rng: random.Random, schema):
    if rng.random() < 0.05:
        return rng.choice([None, [], "text"])
    names = [*schema.get("properties", {}), "extra", "other"]
    return {name: rng.choice(VALUES) for name in names if rng.random() < 0.7}


def test_what_it_passes_the_sdk_passes_over_generated_pairs(session):
    rng = random.Random(20261204)
    passed = refused_by_sdk = 0
    for _ in range(3000):
        schema = _schema(rng)
        content = _content(rng, schema)
        sdk = _sdk_passes(session, schema, content)
        ours = _ours(session, schema, content)
        assert not ours or sdk, (schema, content)
        passed += ours
        refused_by_sdk += not sdk
    # The generator reaches both sides: many pairs pass here, many the SDK refuses.
    assert passed > 500 and refused_by_sdk > 500


@pytest.mark.parametrize("kind, value, plain", [
    ("integer", 3, True), ("integer", True, False), ("integer", 3.0, False),  # 3.0 is an integer to JSON
    ("number", 2.5, True), ("number", math.nan, True), ("number", False, False),  # Schema: the SDK decides
    ("string", "s", True), ("string", 3, False), ("boolean", False, True), ("boolean", 0, False),
    ("null", None, True), ("object", {}, False), ("array", [], False),
])
def test_json_schema_types_at_their_edges(session, kind, value, plain):
    schema = {"type": "object", "properties": {"v": {"type": kind, "title": "V"}}, "required": ["v"]}

    assert _ours(session, schema, {"v": value}) is plain
    assert _sdk_passes(session, schema, {"v": value}) or not plain


def test_tools_without_a_schema_or_not_listed(session):
    result = types.CallToolResult(content=[], structured_content=None)
    session._tool_output_schemas["plain"] = None

    assert _needs_no_schema_check(session, "plain", result) is True  # the SDK checks nothing either
    assert _needs_no_schema_check(session, "unlisted", result) is False  # the SDK lists the tools first
    schema = {"type": "object", "properties": {"r": {"type": "string"}}, "required": ["r"]}
    assert _ours(session, schema, None) is False  # no structured content: the SDK's own error
    assert not _sdk_passes(session, schema, None)


def test_a_changed_schema_is_compiled_anew(session):
    first = {"type": "object", "properties": {"r": {"type": "string"}}, "required": ["r"]}
    assert _ours(session, first, {"r": "x"}) is True
    second = {"type": "object", "properties": {"r": {"type": "integer"}}, "required": ["r"]}
    assert _ours(session, second, {"r": "x"}) is False
    assert not _sdk_passes(session, second, {"r": "x"})

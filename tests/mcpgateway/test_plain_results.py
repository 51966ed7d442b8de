"""The plain result, both ends of the /mcp call path: what the gateway writes directly for a
result of text blocks (perhaps with a flat object of plain values as structured content) is
exactly what the full path — the SDK's surface check, result model and dumps — gives.

- upstream (`session._plain_result`): thousands of generated raw results, plain and nearly
  plain, in every protocol revision; whatever it accepts, the full path accepts too and gives
  the same content, structured content and error flag; whatever it declines, it declines
  before any work is lost (the full path then answers, as before);
- downstream (`lean._plain_dump`): the JSON written is byte for byte the JSON of the model's
  dump passed through `serialize_server_result`;
- and a real server's answers take the plain way (the surface check is not run for them)
  while an answer that is not plain still gets it."""

from __future__ import annotations

import asyncio
import json
import math
import random
import sys

import mcp_types as types
import pytest
from mcp_types import methods as spec_methods
from mcp_types.version import KNOWN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from mcpgateway.downstream.lean import _plain_dump
from mcpgateway.upstream import Supervisor, UpstreamConfig
from mcpgateway.upstream.session import _later_revision_fields, _plain_result, _upstream_result

from .test_upstream_stdio import ECHO_SERVER, ROOT

BLOCKS = [
    {"type": "text", "text": "hello"}, {"type": "text", "text": ""}, {"type": "text", "text": "caf\u00e9 \u2603 \U0001f600"},
    {"type": "text", "text": "x" * 3000},
    # not plain: other kinds, extra keys, a text that is not a string
    {"type": "image", "data": "aGk=", "mimeType": "image/png"}, {"type": "text", "text": "a", "annotations": {"priority": 1}},
    {"type": "text", "text": "a", "_meta": {"k": 1}}, {"type": "text", "text": 5}, {"type": "text"}, {"text": "a"},
    {"type": "text", "text": "a", "extra": True}, "text", None,
]
SCALARS = ["", "x", 0, -3, 2**70, 1.5, -0.0, True, False, None, math.nan, math.inf, -math.inf]
NESTED = [[], [1], {}, {"a": 1}, {"a": [{"b": None}]}]
# Keys as JSON can spell them: `"\ud800"` decodes to a lone surrogate, which the SDK's dump refuses.
KEYS = ["caf\u00e9", "\U0001f600", "", "\ud800", "a\udfffb", "\x00"]


def _structured(rng: random.Random):
    roll = rng.random()
    if roll < 0.3:
        return "absent"
    if roll < 0.4:
        return rng.choice([None, [], "s", 3])
    keys = [f"k{i}" if rng.random() < 0.9 else rng.choice(KEYS) for i in range(rng.randint(0, 4))]
    return {key: rng.choice(SCALARS + NESTED if rng.random() < 0.2 else SCALARS) for key in keys}


def _meta(rng: random.Random):
    value: object = {"io.modelcontextprotocol/serverInfo": {"name": "s", "version": "1"}}
    roll = rng.random()
    if roll < 0.4:
        return "absent"
    if roll < 0.5:
        return rng.choice([None, [], "m", {"x": math.nan}, {"x": {1, 2}}, {rng.choice(KEYS): 1},
                           {"a": {rng.choice(KEYS): [1]}}])
    for _ in range(rng.choice([0, 0, 3, 7, 8, 9, 400])):  # around the depth the plain check allows
        value = {"n": value}
    return value


def _raw(rng: random.Random) -> dict:
    raw: dict = {"content": [rng.choice(BLOCKS[:4] * 6 + BLOCKS) for _ in range(rng.randint(0, 3))]}
    if rng.random() < 0.05:
        raw["content"] = rng.choice([None, "text", {"type": "text"}])
    for key, value in (("structuredContent", _structured(rng)), ("_meta", _meta(rng)),
                       ("isError", rng.choice(["absent", "absent", True, False, None, 1, "yes"])),
                       ("resultType", rng.choice(["absent", "absent", "complete", "input_required", 5]))):
        if value != "absent":
            raw[key] = value
    if rng.random() < 0.05:
        raw[rng.choice(["extra", "inputRequests", "requestState"])] = rng.choice([{}, "x", 1])
    if rng.random() < 0.05:
        del raw["content"]
    return raw


def _full_path(version: str, raw: dict):
    """What `_call_short` makes of `raw` without the plain case: (content, structured, is error), or
    None where it does anything else (refuses it, asks again, answers with an error)."""
    try:
        spec_methods.validate_server_result("tools/call", version, raw)
    except (ValidationError, ValueError):
        return None
    later = _later_revision_fields(version)
    raw = {key: value for key, value in raw.items() if key not in later}
    if raw.get("resultType") == "input_required":
        return None
    try:
        result = _upstream_result(types.CallToolResult.model_validate(raw, by_name=False))
    except ValidationError:
        return None
    return result.content, result.structured, result.is_error


def test_what_the_plain_case_accepts_the_full_path_gives_alike_in_every_revision() -> None:
    rng = random.Random(20261205)
    taken = declined = 0
    for _ in range(12000):
        raw = _raw(rng)
        version = rng.choice(KNOWN_PROTOCOL_VERSIONS)
        plain = _plain_result(version, raw)
        if plain is None:
            declined += 1
            continue
        taken += 1
        full = _full_path(version, raw)
        assert full is not None, (version, raw)
        content, structured, is_error = plain
        assert (content, structured, is_error) == full, (version, raw)
        assert json.dumps(content) == json.dumps(full[0])  # same keys, same order
    assert taken > 600 and declined > 4000, (taken, declined)  # both sides really exercised


@pytest.mark.parametrize("raw", [
    {"content": [{"type": "text", "text": "a"}], "structuredContent": {"x": math.nan}},  # the dump makes it null
    {"content": [{"type": "text", "text": "a"}], "structuredContent": {"x": {"y": 1}}},  # not flat
    {"content": [{"type": "image", "data": "aGk=", "mimeType": "image/png"}]},
    {"content": [{"type": "text", "text": "a", "annotations": {"priority": 1}}]},
    {"content": [{"type": "text", "text": "a"}], "isError": None},
    {"content": [{"type": "text", "text": "a"}], "resultType": "input_required"},
    {"content": [{"type": "text", "text": "a"}], "_meta": {"n": {"n": {"n": {"n": {"n": {"n": {"n": {"n": {}}}}}}}}}},
    {"content": [{"type": "text", "text": "a"}], "unknown": 1},
    {"structuredContent": {"x": 1}},
    {"content": [{"type": "text", "text": "a"}], "structuredContent": {"\ud800": 1}, "resultType": "complete"},
    {"content": [{"type": "text", "text": "a"}], "_meta": {"a": {"\ud800": 1}}, "resultType": "complete"},
])
def test_results_that_are_not_plain_take_the_full_path(raw) -> None:
    for version in KNOWN_PROTOCOL_VERSIONS:
        assert _plain_result(version, raw) is None
    assert _plain_result("2026-07-28", {"content": []}) is None  # that revision requires `resultType`
    assert _plain_result("2026-07-28", {"content": [], "resultType": "complete"}) == ([], None, False)
    assert _plain_result("2025-11-25", {"content": []}) == ([], None, False)


def _result(rng: random.Random) -> types.CallToolResult | None:
    wire: dict = {"content": [rng.choice(BLOCKS[:7]) for _ in range(rng.randint(0, 3))]}
    structured = _structured(rng)
    if structured != "absent":
        wire["structuredContent"] = structured
    if rng.random() < 0.5:
        wire["isError"] = rng.random() < 0.5
    if rng.random() < 0.1:
        wire["_meta"] = {"trace": "x"}
    try:
        return types.CallToolResult.model_validate(wire)
    except ValidationError:
        return None


def test_the_plain_dump_is_byte_for_byte_the_sdk_sieve() -> None:
    rng = random.Random(5)
    taken = declined = 0
    for _ in range(4000):
        result = _result(rng)
        if result is None:
            continue
        plain = _plain_dump(result, "2026-07-28")
        try:
            full = spec_methods.serialize_server_result(
                "tools/call", "2026-07-28", result.model_dump(by_alias=True, mode="json", exclude_none=True))
        except (ValidationError, ValueError):  # (a key with a lone surrogate: the dump refuses it)
            assert plain is None, result
            continue
        if plain is None:
            declined += 1
            continue
        taken += 1
        assert json.dumps(plain) == json.dumps(full), result
    assert taken > 500 and declined > 500, (taken, declined)


def test_the_plain_dump_is_only_for_the_revision_it_writes() -> None:
    result = types.CallToolResult(content=[types.TextContent(type="text", text="a")])
    assert _plain_dump(result, "2026-07-28") == {"content": [{"text": "a", "type": "text"}], "isError": False,
                                                 "resultType": "complete"}
    assert _plain_dump(result, "2099-01-01") is None
    assert _plain_dump(types.CallToolResult(content=[], structured_content={"x": math.inf}), "2026-07-28") is None
    assert _plain_dump(types.CallToolResult(content=[], structured_content={"\ud800": 1}), "2026-07-28") is None


def test_real_answers_take_the_plain_way_and_others_the_full_check(monkeypatch) -> None:
    """The SDK echo server's answers (2026 era: `_meta`, `resultType`, structured content) and
    server-everything's (2025-11-25, text only) skip the surface check; an image result does not."""
    checked: list[str] = []
    real = spec_methods.validate_server_result

    def counting(method, version, data, **kwargs):
        if method == "tools/call":  # (the SDK's sessions check their lists the same way)
            checked.append(method)
        return real(method, version, data, **kwargs)

    monkeypatch.setattr(spec_methods, "validate_server_result", counting)

    async def scenario() -> None:
        async with Supervisor() as sup:
            await sup.add(UpstreamConfig(name="echo", transport="stdio", command=sys.executable, args=(ECHO_SERVER,),
                                         cwd=str(ROOT)))
            await sup.add(UpstreamConfig(name="everything", transport="stdio", command="npx",
                                         args=("-y", "@modelcontextprotocol/server-everything"), cwd=str(ROOT)))
            await sup.wait_up("echo", timeout=15)
            await sup.wait_up("everything", timeout=30)
            checked.clear()
            echoed = await sup.call_tool("echo", "echo", {"message": "hi"})
            assert (echoed.text(), echoed.structured, echoed.is_error) == ("hi", {"result": "hi"}, False)
            assert (await sup.call_tool("everything", "echo", {"message": "hey"})).text() == "Echo: hey"
            assert checked == []
            image = await sup.call_tool("everything", "get-tiny-image", {})
            assert any(block.get("type") == "image" for block in image.content), image
            assert checked == ["tools/call"]

    asyncio.run(scenario())

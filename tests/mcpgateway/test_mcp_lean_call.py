"""The lean path for modern `tools/call`: the same answer as the SDK's entry, byte for byte in
meaning, and everything but the plain success of a valid call left to the SDK.

Real parts: the endpoint under uvicorn, the gateway dispatching to the stdio echo server,
the bearer key from the database, raw HTTP posts so the wire itself is compared."""

from __future__ import annotations

import json

import httpx2
import pytest
from mcp_types import CLIENT_CAPABILITIES_META_KEY, PROTOCOL_VERSION_META_KEY

from mcpgateway.audit_batch import flush_audit
from mcpgateway.dispatch import Gateway
from mcpgateway.downstream import build_mcp_app
from mcpgateway.models import AuditEntry
from orchestrator.api_auth import authenticate_mcp
from tests.mcpgateway.test_downstream import ServedEndpoint
from tests.mcpgateway.test_mcp_fast_path import echo_team  # noqa: F401  (fixture)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
MODERN = "2026-07-28"


class CountingLean:
    """Wraps the endpoint's real lean path and counts the calls it answered itself."""

    def __init__(self, lean) -> None:
        self.lean, self.answered, self.handed_on = lean, 0, 0

    async def __call__(self, *args):
        replay = await self.lean(*args)
        if replay is None:
            self.answered += 1
        else:
            self.handed_on += 1
        return replay


def _call(token: str, name: str, arguments, *, mcp_name: str | None = None, request_id=7,
          extra_headers: dict | None = None) -> tuple[dict, bytes, dict]:
    body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
            "params": {"name": name, "arguments": arguments,
                       "_meta": {PROTOCOL_VERSION_META_KEY: MODERN, CLIENT_CAPABILITIES_META_KEY: {}}}}
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
               "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": MODERN,
               "Mcp-Method": "tools/call", "Mcp-Name": mcp_name or name, **(extra_headers or {})}
    return body, json.dumps(body).encode(), headers


def _both_ways(url: str, endpoint, token: str, name: str, arguments, **kw):
    """The same request answered by the lean path, then by the SDK's entry (lean switched off)."""
    _, raw, headers = _call(token, name, arguments, **kw)
    lean = endpoint._lean
    counted = CountingLean(lean)
    endpoint._lean = counted
    first = httpx2.post(url, content=raw, headers=headers, timeout=30)
    endpoint._lean = None
    second = httpx2.post(url, content=raw, headers=headers, timeout=30)
    endpoint._lean = lean
    return counted, first, second


def _served():
    endpoint = build_mcp_app(authenticate=authenticate_mcp, toolbox=Gateway(defer_audit=True),
                             allowed_hosts=["127.0.0.1"])
    return endpoint, ServedEndpoint(endpoint)


def test_it_answers_a_valid_modern_call_as_the_sdk_entry_does(echo_team):  # noqa: F811
    _team, _server, key, token = echo_team
    endpoint, served = _served()
    with served:
        counted, lean, sdk = _both_ways(served.url, endpoint, token, "echo__echo", {"message": "hi"})
    assert counted.answered == 1
    assert (lean.status_code, lean.headers["content-type"]) == (sdk.status_code, sdk.headers["content-type"]) \
        == (200, "application/json")
    assert lean.json() == sdk.json()
    assert lean.json()["result"]["content"] == [{"type": "text", "text": "hi"}]
    flush_audit()
    assert AuditEntry.objects.filter(api_key_id=key.pk, tool_name="echo__echo", status="ok").count() == 2


def test_it_answers_a_refused_tool_as_a_tool_error_like_the_sdk(echo_team):  # noqa: F811
    _team, _server, _key, token = echo_team
    endpoint, served = _served()
    with served:
        counted, lean, sdk = _both_ways(served.url, endpoint, token, "echo__nothing", {"message": "hi"})
    assert counted.answered == 1
    assert lean.status_code == sdk.status_code == 200
    assert lean.json() == sdk.json()
    assert lean.json()["result"]["isError"] is True


def test_it_leaves_a_header_that_contradicts_the_body_to_the_sdk(echo_team):  # noqa: F811
    _team, _server, key, token = echo_team
    endpoint, served = _served()
    with served:
        counted, lean, sdk = _both_ways(served.url, endpoint, token, "echo__echo", {"message": "hi"},
                                        mcp_name="echo__other")
    assert (counted.answered, counted.handed_on) == (0, 1)
    assert lean.status_code == sdk.status_code == 400
    assert lean.json() == sdk.json()
    flush_audit()
    assert not AuditEntry.objects.filter(api_key_id=key.pk).exists()


def test_it_leaves_invalid_params_to_the_sdk(echo_team):  # noqa: F811
    _team, _server, _key, token = echo_team
    endpoint, served = _served()
    with served:
        counted, lean, sdk = _both_ways(served.url, endpoint, token, "echo__echo", ["not", "a", "mapping"])
    assert (counted.answered, counted.handed_on) == (0, 1)
    assert lean.status_code == sdk.status_code
    assert lean.json() == sdk.json()
    assert "error" in lean.json()


class _SchemaLookupFails(Gateway):
    def tool_input_schema(self, principal, name):
        raise RuntimeError("catalogue unavailable")


def test_it_answers_like_the_sdk_when_the_schema_lookup_fails(echo_team):  # noqa: F811
    """The SDK skips the `Mcp-Param-*` check when the lookup raises; the lean path must not
    turn that into a crashed request."""
    _team, _server, _key, token = echo_team
    endpoint = build_mcp_app(authenticate=authenticate_mcp, toolbox=_SchemaLookupFails(defer_audit=True),
                             allowed_hosts=["127.0.0.1"])
    with ServedEndpoint(endpoint) as served:
        counted, lean, sdk = _both_ways(served.url, endpoint, token, "echo__echo", {"message": "hi"})
    assert counted.handed_on == 1
    assert lean.status_code == sdk.status_code == 200
    assert lean.json() == sdk.json()
    assert lean.json()["result"]["content"] == [{"type": "text", "text": "hi"}]


ANNOTATED = {"type": "object", "properties": {"message": {"type": "string", "x-mcp-header": "Message"}},
             "required": ["message"]}
PLAIN = {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]}


class _SchemaOf(Gateway):
    """The echo tool's schema replaced by `schema`: one object, handed out on every call, as the
    catalogue snapshot hands out its own."""

    def __init__(self, schema, **kw):
        super().__init__(**kw)
        self.schema = schema

    def tool_input_schema(self, principal, name):
        return self.schema if super().tool_input_schema(principal, name) is not None else None


@pytest.mark.parametrize("header, lean_answers, status", [
    ("hi", True, 200),  # the annotated argument mirrored: valid
    ("bye", False, 400),  # contradicts the body: the SDK's rejection
    (None, False, 400),  # annotated, present in the body, missing from the headers
])
def test_annotated_headers_are_checked_on_every_call(echo_team, header, lean_answers, status):  # noqa: F811
    _team, _server, _key, token = echo_team
    endpoint = build_mcp_app(authenticate=authenticate_mcp, toolbox=_SchemaOf(ANNOTATED, defer_audit=True),
                             allowed_hosts=["127.0.0.1"])
    extra = {} if header is None else {"Mcp-Param-Message": header}
    with ServedEndpoint(endpoint) as served:
        for _ in range(2):  # the second call meets whatever the first one left cached
            counted, lean, sdk = _both_ways(served.url, endpoint, token, "echo__echo", {"message": "hi"},
                                            extra_headers=extra)
            assert (counted.answered, counted.handed_on) == ((1, 0) if lean_answers else (0, 1))
            assert lean.status_code == sdk.status_code == status
            assert lean.json() == sdk.json()


def test_a_schema_without_header_annotations_ignores_param_headers_like_the_sdk(echo_team):  # noqa: F811
    _team, _server, _key, token = echo_team
    endpoint = build_mcp_app(authenticate=authenticate_mcp, toolbox=_SchemaOf(PLAIN, defer_audit=True),
                             allowed_hosts=["127.0.0.1"])
    with ServedEndpoint(endpoint) as served:
        for _ in range(2):
            counted, lean, sdk = _both_ways(served.url, endpoint, token, "echo__echo", {"message": "hi"},
                                            extra_headers={"Mcp-Param-Message": "anything"})
            assert counted.answered == 1
            assert lean.status_code == sdk.status_code == 200
            assert lean.json() == sdk.json()
            assert lean.json()["result"]["content"] == [{"type": "text", "text": "hi"}]

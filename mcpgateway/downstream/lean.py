"""The short path for the common request: a 2026-07-28 `tools/call` answered as JSON.

A modern `tools/call` is one self-contained POST. The SDK's entry builds a Starlette
request and response, a per-request `Connection`, a dispatch context, a server runner
and its middleware chain around one handler call; here the same checks run in one
function and the result is written straight to the ASGI `send`:

- Content-Type and Accept as the SDK's transport checks them; the body size limit;
- the JSON-RPC envelope (`JSONRPCRequest`), duplicated routing headers, the modern
  classification ladder (`_meta` envelope, `MCP-Protocol-Version`/`Mcp-Method`/`Mcp-Name`
  matching the body, supported version), `Mcp-Param-*` headers against the tool's schema;
- the spec surface validation of the params and `CallToolRequestParams`;
- then the same `call_tool` handler the SDK server runs (grant, rate limit, approval,
  upstream, redaction, audit all stay in `Toolbox.call_tool`), and the result shaped
  by the spec sieve with the `serverInfo` stamp, as the SDK's runner shapes it.

Anything else — another method, a notification, a rejected or malformed request, SSE
mode, tracing switched on — is handed to the SDK's own entry with the body replayed,
so every answer but the plain success of a valid call is the SDK's, byte for byte.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import mcp_types as types
from mcp.server.runner import modern_error_data
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE
from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    MCP_PARAM_HEADER_PREFIX,
    X_MCP_HEADER_KEY,
    InboundModernRoute,
    classify_inbound_request,
    find_duplicated_routing_header,
    validate_mcp_param_headers,
)
from mcp_types import SERVER_INFO_META_KEY
from mcp_types import methods as spec_methods
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError
from starlette.datastructures import Headers
from starlette.types import Message, Receive, Scope, Send

from mcpgateway.downstream.disconnect import CallerGone, DisconnectWatch
from mcpgateway.types import Principal, plain_key, plain_scalar
from mcpgateway.whole_numbers import is_whole

logger = logging.getLogger(__name__)

_PARAM_PREFIX = MCP_PARAM_HEADER_PREFIX.lower()
_JSON_HEADERS = [(b"content-type", b"application/json")]

CallTool = Callable[[Principal, types.CallToolRequestParams, Any], Awaitable[types.CallToolResult]]
SchemaLookup = Callable[[str], Any]


def wants_lean_call(scope: Scope, headers: Headers) -> bool:
    """Whether the headers describe a modern `tools/call` POST this path may answer."""
    return (
        scope.get("method") == "POST"
        and headers.get("mcp-method") == "tools/call"
        and headers.get("mcp-protocol-version") in MODERN_PROTOCOL_VERSIONS
        and (headers.get("content-type") or "").lower().startswith("application/json")
        and _accepts_json(headers.get("accept", ""))
    )


_PLAIN_VERSION = "2026-07-28"  # the revision whose result surface `_plain_dump` writes


def _plain_dump(result: types.CallToolResult, version: str) -> dict[str, Any] | None:
    """What the model's dump and the spec sieve (`serialize_server_result`) make of a result of
    text blocks, perhaps with a flat object of plain values as structured content, written
    directly, key order included (most results are such, and the two passes were a twentieth
    of the gateway's CPU per call); None for any other result, which takes those passes."""
    if (version != _PLAIN_VERSION or type(result) is not types.CallToolResult or result.meta is not None
            or result.result_type != "complete" or result.model_extra or type(result.is_error) is not bool):
        return None
    blocks = []
    for block in result.content:
        if (type(block) is not types.TextContent or block.annotations is not None or block.meta is not None
                or block.model_extra or type(block.text) is not str):
            return None
        blocks.append({"text": block.text, "type": "text"})
    dumped: dict[str, Any] = {"content": blocks, "isError": result.is_error, "resultType": "complete"}
    structured = result.structured_content
    if structured is not None:
        if type(structured) is not dict or not all(plain_key(k) and plain_scalar(v) for k, v in structured.items()):
            return None
        dumped["structuredContent"] = dict(structured)
    return dumped


def _accepts_json(accept: str) -> bool:
    """The SDK's Accept rule for JSON-response mode (RFC 7231 wildcards)."""
    for media in accept.split(","):
        kind = media.split(";", 1)[0].strip().lower()
        if kind in ("application/json", "application/*", "*/*"):
            return True
    return False


class LeanCall:
    """Answers one modern `tools/call`, or says it must go to the SDK (returns the replay)."""

    def __init__(self, *, call_tool: CallTool, server_info: dict[str, Any],
                 max_body: int = DEFAULT_MAX_REQUEST_BODY_SIZE) -> None:
        self._call_tool = call_tool
        self._server_info = server_info
        self._max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send, headers: Headers, principal: Principal,
                       schema: SchemaLookup) -> Receive | None:
        """None when answered; otherwise a `receive` that replays what was read, for the SDK."""
        declared = headers.get("content-length")
        if declared is not None and (not is_whole(declared) or int(declared) > self._max_body):
            return receive
        read: list[Message] = []
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            read.append(message)
            if message["type"] != "http.request":
                return _replay(read, receive)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                return _replay(read, receive)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        watch = DisconnectWatch(receive)
        try:
            answer = await self._answer(body, headers, principal, schema, watch)
        except CallerGone:
            return None  # the client hung up: its call was cancelled, and nobody reads an answer
        finally:
            watch.stop()
        if answer is None:
            return _replay([{"type": "http.request", "body": body, "more_body": False}], receive)
        status, answer = answer
        await send({"type": "http.response.start", "status": status,
                    "headers": [*_JSON_HEADERS, (b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})
        return None

    async def _answer(self, body: bytes, headers: Headers, principal: Principal,
                      schema: SchemaLookup, watch: DisconnectWatch | None = None) -> tuple[int, bytes] | None:
        """The status and body answering a valid call, or None for anything the SDK should answer.
        With `watch`, the call is cancelled if the client disconnects while it runs (`CallerGone`)."""
        try:
            decoded = json.loads(body)
        except (ValueError, RecursionError):
            return None
        if not isinstance(decoded, dict) or "id" not in decoded or decoded.get("method") != "tools/call":
            return None
        try:
            request = types.JSONRPCRequest.model_validate(decoded)
        except ValidationError:
            return None
        pairs = headers.items()
        if find_duplicated_routing_header(pairs) is not None:
            return None
        verdict = classify_inbound_request(decoded, headers=dict(pairs))
        if not isinstance(verdict, InboundModernRoute):
            return None
        params = request.params or {}
        arguments = params.get("arguments")
        if arguments is not None and not isinstance(arguments, dict):
            return None
        name = params.get("name")
        if arguments or any(key.startswith(_PARAM_PREFIX) for key in headers.keys()):
            try:
                input_schema = schema(name) if isinstance(name, str) else None
            except Exception:  # the SDK logs it and skips the header check (fail-open): its answer
                return None
            if input_schema is not None and _may_declare_headers(input_schema) and validate_mcp_param_headers(
                    input_schema, arguments or {}, headers) is not None:
                return None
        version = verdict.protocol_version
        try:
            spec_methods.validate_client_request("tools/call", version, params)
            typed = types.CallToolRequestParams.model_validate(params, by_name=False)
        except (KeyError, ValidationError):
            return None
        try:
            if watch is None:
                result = await self._call_tool(principal, typed, request.id)
            else:
                # (nothing before this point awaits: `receive` is read by the watch only from here)
                watch.start()
                result = await watch.guard(self._call_tool(principal, typed, request.id))
        except CallerGone:
            raise
        except Exception as exc:  # the SDK entry's exception-to-wire boundary, same mapping
            return _error(request.id, modern_error_data(exc))
        dumped = _plain_dump(result, version)
        if dumped is None:
            dumped = result.model_dump(by_alias=True, mode="json", exclude_none=True)
            try:
                dumped = spec_methods.serialize_server_result("tools/call", version, dumped)
            except ValidationError:
                logger.exception("the tools/call handler returned an invalid result")
                return _error(request.id, types.ErrorData(code=types.INTERNAL_ERROR, message="Handler returned an invalid result"))
        if dumped.get("resultType") is None:
            dumped["resultType"] = "complete"
        meta = dumped.get("_meta")
        if meta is None:
            dumped["_meta"] = {SERVER_INFO_META_KEY: dict(self._server_info)}
        elif isinstance(meta, dict) and meta.get(SERVER_INFO_META_KEY) is None:
            dumped["_meta"] = {**meta, SERVER_INFO_META_KEY: dict(self._server_info)}
        return 200, json.dumps({"jsonrpc": "2.0", "id": request.id, "result": dumped}, separators=(",", ":")).encode()


# Schemas known to hold no `x-mcp-header` key anywhere, by identity (the catalogue snapshot
# hands out the same schema object on every call until it is reloaded; the object is kept, so
# its id is never another's): `validate_mcp_param_headers` compares only annotated properties,
# so for such a schema it accepts whatever the headers say, and its schema walk can be skipped.
# Reloaded snapshots bring new objects: the oldest entries make way, so at most
# `_HEADER_FREE_MAX` schemas are kept alive here.
_HEADER_FREE: dict[int, Any] = {}
_HEADER_FREE_MAX = 256


def _may_declare_headers(schema: Any) -> bool:
    """False only for a schema in which no dict, at any depth, has an `x-mcp-header` key (so
    none of its schema positions declares a header); True sends the call to the SDK's check."""
    if _HEADER_FREE.get(id(schema)) is schema:
        return False
    if _holds_key(schema, X_MCP_HEADER_KEY):
        return True
    if len(_HEADER_FREE) >= _HEADER_FREE_MAX:
        with contextlib.suppress(StopIteration, KeyError, RuntimeError):  # (another thread may evict meanwhile)
            del _HEADER_FREE[next(iter(_HEADER_FREE))]
    _HEADER_FREE[id(schema)] = schema
    return False


def _holds_key(value: Any, key: str) -> bool:
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if key in node:
                return True
            stack.extend(node.values())
        elif isinstance(node, list | tuple):
            stack.extend(node)
    return False


def _error(request_id: Any, error: types.ErrorData) -> tuple[int, bytes]:
    """A JSON-RPC error reply with the SDK's table-mapped HTTP status."""
    wire = types.JSONRPCError(jsonrpc="2.0", id=request_id, error=error)
    body = wire.model_dump(mode="json", by_alias=True, exclude_none=True)
    return ERROR_CODE_HTTP_STATUS.get(error.code, 200), json.dumps(body, separators=(",", ":")).encode()


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A `receive` that gives back `messages` first, then reads on."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay

"""The MCP server behind the endpoint: tools listed and called per caller through a `Toolbox`.

Built on the SDK's low-level `Server`: `tools/list` returns exactly what the toolbox
grants the request's principal, `tools/call` routes to `Toolbox.call_tool`. Refusals
and failures come back as tool error results (data for the model), never as protocol
errors. The principal is read from the HTTP request the SDK hands each handler.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Mapping
from importlib import metadata
from typing import Any

import mcp_types as types
from mcp.server.caching import CacheHint
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from mcpgateway.downstream.access import PRINCIPAL_SCOPE_KEY
from mcpgateway.downstream.disconnect import DISCONNECT_SCOPE_KEY, CallerGone
from mcpgateway.types import Principal, Toolbox, ToolDenied, ToolInvocation, ToolResult

logger = logging.getLogger(__name__)

ToolboxSource = Toolbox | Callable[[], Toolbox]


def build_tool_server(source: ToolboxSource, name: str) -> Server[Any]:
    """A low-level SDK server whose tools are whatever `source` grants the caller.

    `source` is a `Toolbox`, or a zero-argument factory called per MCP request.
    """

    toolbox = _toolbox_factory(source)

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        principal = principal_of(ctx)
        try:
            specs = await toolbox().list_tools(principal)
        except Exception:
            logger.exception("listing tools for %r failed", principal)
            raise MCPError(code=types.INTERNAL_ERROR, message="Could not list tools") from None
        tools = []
        for spec in specs:
            try:
                tools.append(types.Tool(name=spec.name, description=spec.description, input_schema=spec.input_schema))
            except ValidationError:
                logger.warning("tool %r has an invalid input schema; not listed", spec.name)
        return types.ListToolsResult(tools=tools)

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        call = call_granted_tool(toolbox(), principal_of(ctx), params, ctx.request_id)
        request = ctx.request
        watch = request.scope.get(DISCONNECT_SCOPE_KEY) if request is not None else None
        if watch is None:
            return await call
        try:
            return await watch.guard(call)  # cancelled if the HTTP client hangs up (`disconnect`)
        except CallerGone:
            return _error_result(f"Tool {params.name!r}: the caller went away; the call was cancelled.")

    server: Server[Any] = Server(
        name,
        version=_version(),
        # Tool lists differ per caller and grants change: never share or keep a listing.
        cache_hints={"tools/list": CacheHint(ttl_ms=0, scope="private")},
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        # 2026-07-28 `tools/call`: the SDK validates `Mcp-Param-*` headers against the called
        # tool's schema; this answers for one tool instead of building the whole tools/list.
        get_tool_input_schema=_tool_input_schema if _has_schema_lookup(source) else None,
    )
    # The SDK's per-message SERVER span costs a few hundred µs per call even with no exporter;
    # run it only while the process traces (`config.tracing`), which can be switched on later.
    server.middleware = [_while_tracing(m) for m in server.middleware]
    return server


async def call_granted_tool(toolbox: Toolbox, principal: Principal, params: types.CallToolRequestParams,
                            request_id: Any) -> types.CallToolResult:
    """One `tools/call` through the toolbox's door, refusals and failures as tool error results
    (the SDK server's handler, and the endpoint's lean path for modern calls)."""
    invocation = ToolInvocation(
        principal=principal,
        name=params.name,
        arguments=dict(params.arguments or {}),
        call_id="" if request_id is None else str(request_id),
    )
    try:
        result = await toolbox.call_tool(invocation)
    except ToolDenied as exc:
        if getattr(exc, "tell_caller", False):  # (e.g. its key was revoked while it waited for approval)
            return _error_result(f"Tool {params.name!r} was not called: {exc}.")
        return _error_result(f"Tool {params.name!r} is not allowed for this caller.")
    except Exception as exc:
        logger.exception("tool %r failed for %r", params.name, invocation.principal)
        return _error_result(f"Tool {params.name!r} failed ({type(exc).__name__}).")
    return call_tool_result(result, params.name)


def _while_tracing(middleware: Any) -> Any:
    from config import tracing

    async def maybe_traced(ctx: Any, call_next: Any) -> Any:
        if tracing.enabled():
            return await middleware(ctx, call_next)
        return await call_next(ctx)

    return maybe_traced


def _has_schema_lookup(source: ToolboxSource) -> bool:
    """A toolbox instance with `tool_input_schema`; else (a factory, a toolbox without one) the
    SDK keeps its own fallback of listing the tools."""
    return not isinstance(source, type) and callable(getattr(source, "tool_input_schema", None))


# What `_tool_input_schema` answers with, set by the endpoint for the request it serves (the
# SDK calls the lookup in that request's task, before its handlers, without a caller).
schema_lookup: contextvars.ContextVar[Callable[[str], Mapping[str, Any] | None] | None] = contextvars.ContextVar(
    "agentdeck_mcp_schema_lookup", default=None)


def _tool_input_schema(name: str) -> Mapping[str, Any] | None:
    lookup = schema_lookup.get()
    return lookup(name) if lookup is not None else None


def _toolbox_factory(source: ToolboxSource) -> Callable[[], Toolbox]:
    """A zero-argument callable giving the toolbox (a class counts as a factory, not a toolbox)."""
    if not isinstance(source, type) and hasattr(source, "list_tools") and hasattr(source, "call_tool"):
        instance: Toolbox = source  # type: ignore[assignment]
        return lambda: instance
    if not callable(source):
        raise TypeError(f"toolbox must be a Toolbox or a factory of one, not {type(source).__name__}")
    return source


def principal_of(ctx: ServerRequestContext[Any]) -> Principal:
    """The principal the endpoint authenticated for the HTTP request carrying `ctx`."""
    request = ctx.request
    principal = request.scope.get(PRINCIPAL_SCOPE_KEY) if request is not None else None
    if not isinstance(principal, Principal):
        raise MCPError(code=types.INVALID_REQUEST, message="No authenticated caller for this request")
    return principal


def call_tool_result(result: ToolResult, name: str = "") -> types.CallToolResult:
    """Map a gateway `ToolResult` to MCP: its `mcp_content` blocks, else one text block."""
    data = result.data or {}
    blocks = data.get("mcp_content")
    wire: dict[str, Any] = {
        "content": blocks if isinstance(blocks, list) else [{"type": "text", "text": result.content}],
        "isError": result.is_error,
    }
    if data.get("structured") is not None:
        wire["structuredContent"] = data["structured"]
    try:
        return types.CallToolResult.model_validate(wire)
    except ValidationError:
        logger.warning("tool %r returned content that is not valid MCP", name, exc_info=True)
        return _error_result(f"Tool {name!r} returned content that is not valid MCP.")


def _error_result(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


def _version() -> str:
    try:
        return metadata.version("agentdeck")
    except metadata.PackageNotFoundError:
        return ""

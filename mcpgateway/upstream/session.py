"""One live connection to an upstream MCP server, over the official SDK `Client`.

`open_session(config, on_list_changed)` connects (protocol era negotiated with
`mode="auto"`, so both 2025-11-25 and 2026-07-28 servers work) and yields an
`UpstreamSession` that discovers, calls tools and probes health. It is entered and
exited by one owning task (the supervisor's), but its methods may be awaited from any
task on the same event loop: the SDK correlates concurrent requests by id.

List changes reach `on_list_changed` in both eras: handshake-era servers send plain
`notifications/*/list_changed`; 2026-era servers send them only on a
`subscriptions/listen` stream, which `listen_for_changes()` keeps open (its events are
also handed to the message handler, so one path serves both).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import types as types_module
import typing
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import mcp_types as types
from mcp import Client
from mcp.client.subscriptions import ListenNotSupportedError, SubscriptionLost
from mcp.shared.exceptions import MCPError
from mcp_types import methods as spec_methods
from mcp_types.version import KNOWN_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, ValidationError

from mcpgateway.types import plain_key, plain_scalar
from mcpgateway.upstream.config import (
    DiscoveredTool,
    Discovery,
    UpstreamConfig,
    UpstreamLost,
    UpstreamResult,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from mcpgateway.upstream.stdio import ChannelLost
from mcpgateway.upstream.transports import TRANSPORTS, OpenedTransport

logger = logging.getLogger(__name__)

CLIENT_INFO = types.Implementation(name="agentdeck-mcp-gateway", version="0.1.0")
_PAGE_CAP = 100
_RELISTEN_DELAY_S = 1.0
_LIST_CHANGED = (
    types.ToolListChangedNotification,
    types.ResourceListChangedNotification,
    types.PromptListChangedNotification,
)


def _dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def _tool(tool: types.Tool) -> DiscoveredTool:
    return DiscoveredTool(
        name=tool.name,
        description=tool.description or "",
        input_schema=dict(tool.input_schema),
        output_schema=dict(tool.output_schema) if tool.output_schema is not None else None,
        annotations=_dump(tool.annotations) if tool.annotations is not None else None,
    )


def _upstream_result(result: types.CallToolResult) -> UpstreamResult:
    return UpstreamResult(
        content=[_dump(block) for block in result.content],
        structured=result.structured_content,
        is_error=bool(result.is_error),
    )


# --- the output-schema check's plain case ---------------------------------------------------
#
# The SDK checks structured content against the tool's output schema with a jsonschema
# validator, a few dozen µs a call. Many output schemas are a flat object of typed properties
# (what FastMCP derives for a primitive return value, or a model of required primitive
# fields); for those, content that plainly conforms is
# recognised here in a few µs, with the very schema the SDK's session holds. Anything else —
# another schema, content that does not plainly conform, a tool the session has not listed —
# goes to the SDK's check, which gives its own answer and message. So a result passed here is
# one the SDK's validator passes too: this only ever skips work, never a refusal.

_PLAIN_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda value: type(value) is str,
    "integer": lambda value: type(value) is int,
    "number": lambda value: type(value) is int or type(value) is float,
    "boolean": lambda value: type(value) is bool,
    "null": lambda value: value is None,
}
_ANNOTATIONS = frozenset({"title", "description"})
_PLAIN_SCHEMAS: dict[int, tuple[Any, tuple[tuple[str, ...], dict[str, Callable[[Any], bool]]] | None]] = {}
_PLAIN_SCHEMAS_MAX = 256  # schemas kept alive here at most


def _needs_no_schema_check(session: Any, tool: str, result: types.CallToolResult) -> bool:
    """Whether the SDK's `validate_tool_result` would surely pass `result` (see above)."""
    return _structured_passes(session, tool, result.structured_content)


def _structured_passes(session: Any, tool: str, content: Any) -> bool:
    """Whether the SDK's `validate_tool_result` would surely pass a successful result whose
    structured content is `content` (None: none)."""
    schemas = getattr(session, "_tool_output_schemas", None)
    if not isinstance(schemas, dict) or tool not in schemas:
        return False  # not listed yet: the SDK lists the tools first
    schema = schemas[tool]
    if schema is None:
        return True  # no output schema: the SDK checks nothing
    plain = _plain_schema(schema)
    if plain is None or type(content) is not dict:
        return False
    required, properties = plain
    return all(name in content for name in required) and all(
        check(content[name]) for name, check in properties.items() if name in content)


def _plain_schema(schema: Any) -> tuple[tuple[str, ...], dict[str, Callable[[Any], bool]]] | None:
    """(required names, type check per property) of a flat object schema, or None for any other."""
    cached = _PLAIN_SCHEMAS.get(id(schema))
    if cached is not None and cached[0] is schema:  # (the schema is kept, so its id is never another's)
        return cached[1]
    plain = _compile_plain(schema)
    if len(_PLAIN_SCHEMAS) >= _PLAIN_SCHEMAS_MAX:
        with contextlib.suppress(StopIteration, KeyError, RuntimeError):  # (another thread may evict meanwhile)
            del _PLAIN_SCHEMAS[next(iter(_PLAIN_SCHEMAS))]  # the oldest: likely a schema no listing holds now
    _PLAIN_SCHEMAS[id(schema)] = (schema, plain)
    return plain


# --- the plain result ---------------------------------------------------------------------------
#
# Most results are text blocks, perhaps with a flat object of structured content (what FastMCP
# derives from a primitive return value). For those the surface check, the result model and
# the dump of each block (`validate_server_result`, `CallToolResult`, `_upstream_result`, a
# tenth of the gateway's CPU per call) give back exactly what came in; `_plain_result`
# recognises them in a few µs and anything else takes the full path, which gives its own
# answer. (Floats that are not finite are not plain: JSON has no such numbers, and the
# model's dump would turn them into null.)

_PLAIN_RESULT_KEYS = frozenset({"content", "structuredContent", "isError", "resultType", "_meta"})
_PLAIN_META_DEPTH = 8  # far inside what the model's dump serialises


def _shallow(value: Any, depth: int = _PLAIN_META_DEPTH) -> bool:
    """Whether `value` is JSON of plain values nested at most `depth` levels (a result's `_meta`,
    which the full path checks and dumps and the gateway then drops)."""
    if type(value) is dict:
        return depth > 0 and all(plain_key(k) and _shallow(v, depth - 1) for k, v in value.items())
    if type(value) is list:
        return depth > 0 and all(_shallow(v, depth - 1) for v in value)
    return plain_scalar(value)


@functools.cache
def _result_type_required(version: str) -> bool | None:
    """Whether `version`'s result surface requires `resultType` (2026-07-28 does), asked of the
    surface itself; None where not even the smallest plain result passes it (no plain case)."""
    for raw in ({"content": []}, {"content": [], "resultType": "complete"}):
        try:
            spec_methods.validate_server_result("tools/call", version, raw)
        except (ValidationError, ValueError, KeyError):
            continue
        return "resultType" in raw
    return None


def _plain_result(version: str, raw: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any] | None, bool] | None:
    """(content, structured content, is error) of a result made only of text blocks, a flat
    object of primitive values as structured content, a boolean `isError`, `resultType`
    "complete" and a `_meta` of plain JSON (each optional but the content, and `resultType`
    where `version` requires it), as the full path would give them; None for anything else."""
    required = _result_type_required(version)
    if required is None or not raw.keys() <= _PLAIN_RESULT_KEYS:
        return None
    if raw.get("resultType", None if required else "complete") != "complete":
        return None
    meta = raw.get("_meta")
    if meta is not None and (type(meta) is not dict or not _shallow(meta)):
        return None
    content = raw.get("content")
    if type(content) is not list:
        return None
    blocks = []
    for block in content:
        if type(block) is not dict or len(block) != 2 or block.get("type") != "text" or type(block.get("text")) is not str:
            return None
        blocks.append({"type": "text", "text": block["text"]})
    structured = raw.get("structuredContent")
    if structured is not None and (type(structured) is not dict
                                   or not all(plain_key(k) and plain_scalar(v) for k, v in structured.items())):
        return None
    is_error = raw.get("isError", False)
    if type(is_error) is not bool:
        return None
    return blocks, structured, is_error


def _compile_plain(schema: Any) -> tuple[tuple[str, ...], dict[str, Callable[[Any], bool]]] | None:
    if not isinstance(schema, dict) or schema.get("type") != "object":
        return None
    if not set(schema) <= {"type", "properties", "required"} | _ANNOTATIONS or not _annotations_ok(schema):
        return None
    properties, required = schema.get("properties", {}), schema.get("required", [])
    if not isinstance(properties, dict) or not isinstance(required, list) \
            or not all(isinstance(name, str) for name in required) or len(set(required)) != len(required):
        return None
    checks: dict[str, Callable[[Any], bool]] = {}
    for name, sub in properties.items():
        if not isinstance(sub, dict) or not set(sub) <= {"type"} | _ANNOTATIONS or not _annotations_ok(sub):
            return None
        check = _PLAIN_TYPES.get(sub["type"]) if isinstance(sub.get("type"), str) else None
        if check is None:
            return None
        checks[name] = check
    return tuple(required), checks


def _annotations_ok(schema: dict[str, Any]) -> bool:
    return all(isinstance(schema[key], str) for key in _ANNOTATIONS if key in schema)


@functools.cache
def _later_revision_fields(version: str) -> frozenset[str]:
    """`tools/call` result keys that only revisions newer than `version` declare: dropped, as
    the SDK's session drops them, so a later revision's constraints never apply to them."""
    if ("tools/call", version) not in spec_methods.SERVER_RESULTS or version not in KNOWN_PROTOCOL_VERSIONS:
        return frozenset()
    newer = KNOWN_PROTOCOL_VERSIONS[KNOWN_PROTOCOL_VERSIONS.index(version) + 1:]
    later: set[str] = set()
    for revision in newer:
        if ("tools/call", revision) in spec_methods.SERVER_RESULTS:
            later |= _wire_fields(spec_methods.SERVER_RESULTS[("tools/call", revision)])
    return frozenset(later - _wire_fields(spec_methods.SERVER_RESULTS[("tools/call", version)]))


def _wire_fields(row: Any) -> set[str]:
    members = typing.get_args(row) if isinstance(row, types_module.UnionType) else (row,)
    return {field.alias or name for member in members if isinstance(member, type) and issubclass(member, BaseModel)
            for name, field in member.model_fields.items()}


def _error_result(message: str) -> UpstreamResult:
    return UpstreamResult(content=[{"type": "text", "text": message}], structured=None, is_error=True)


class UpstreamSession:
    """A connected SDK client plus what the supervisor watches on it."""

    def __init__(self, config: UpstreamConfig, client: Client, opened: OpenedTransport) -> None:
        self.config = config
        self.client = client
        self.closed = opened.closed
        self.pid: int | None = None
        self._find_pid = opened.find_pid
        self._channel = opened.channel
        self._stamp: dict[str, Any] | None = None

    @property
    def modern(self) -> bool:
        """True on a 2026-07-28 connection (no ping; list changes need subscriptions/listen)."""
        return self.client.protocol_version in MODERN_PROTOCOL_VERSIONS

    async def lookup_pid(self) -> int | None:
        """Find the stdio child's pid (None for HTTP transports or when /proc is unreadable)."""
        if self._find_pid is not None:
            self.pid = await asyncio.to_thread(self._find_pid)
        return self.pid

    async def _walk(self, fetch: Callable[[str | None], Awaitable[Any]], attr: str) -> list[Any]:
        """Collect every page of a list method; a method the server does not know lists nothing."""
        items: list[Any] = []
        cursor: str | None = None
        for _ in range(_PAGE_CAP):
            try:
                page = await fetch(cursor)
            except MCPError as error:
                if error.code != types.METHOD_NOT_FOUND:
                    raise
                return items
            items.extend(getattr(page, attr))
            cursor = page.next_cursor
            if not cursor:
                break
        return items

    async def discover(self) -> Discovery:
        """List tools, resources, resource templates and prompts the server declares."""
        client = self.client
        caps = client.server_capabilities
        tools: list[types.Tool] = []
        resources: list[Any] = []
        templates: list[Any] = []
        prompts: list[Any] = []
        if caps.tools is not None:
            tools = await self._walk(lambda c: client.list_tools(cursor=c), "tools")
        if caps.resources is not None:
            resources = await self._walk(lambda c: client.list_resources(cursor=c), "resources")
            templates = await self._walk(
                lambda c: client.list_resource_templates(cursor=c), "resource_templates"
            )
        if caps.prompts is not None:
            prompts = await self._walk(lambda c: client.list_prompts(cursor=c), "prompts")
        info = client.server_info
        return Discovery(
            tools=[_tool(tool) for tool in tools],
            resources=[_dump(resource) for resource in resources],
            prompts=[_dump(prompt) for prompt in prompts],
            server_info=_dump(info) if info is not None else {},
            resource_templates=[_dump(template) for template in templates],
            protocol_version=client.protocol_version,
            capabilities=_dump(caps),
            instructions=client.instructions or "",
        )

    async def call_tool(self, tool: str, arguments: dict[str, Any], timeout_s: float,
                        meta: dict[str, Any] | None = None) -> UpstreamResult:
        """Call one tool; tool failures and JSON-RPC errors come back as `is_error` results.

        On stdio the call takes the channel's short path (`upstream.stdio`), unless the
        caller carries a trace to continue: the SDK's client makes that span.

        Raises:
            UpstreamTimeout: no answer within `timeout_s` (the server is told to cancel).
            UpstreamUnavailable: the connection closed before or during the call; UpstreamLost
            (a subclass) where it is known to have closed after the request was written (the
            stdio short path: the server may have acted on it).
        """
        short = self._channel is not None and not (meta and "traceparent" in meta)
        try:
            if short:  # (asyncio's own deadline: a quarter of an anyio cancel scope's cost)
                async with asyncio.timeout(timeout_s):
                    return await self._call_short(tool, arguments, timeout_s, meta)
            with anyio.fail_after(timeout_s):
                result = await self.client.call_tool(tool, arguments, meta=meta)
        except TimeoutError:
            raise UpstreamTimeout(f"{self.config.name}: {tool} timed out after {timeout_s:g}s") from None
        except MCPError as error:
            return self._mcp_error(error, tool)
        except (RuntimeError, ValidationError) as error:
            return self._invalid(error)
        return _upstream_result(result)

    async def _call_short(self, tool: str, arguments: dict[str, Any], timeout_s: float,
                          meta: dict[str, Any] | None) -> UpstreamResult:
        """`tools/call` written straight to the stdio channel; the answer is checked as the
        SDK's `Client.call_tool` checks it (the negotiated revision's result surface, the
        result model, the tool's output schema), so the caller cannot tell the paths apart.
        Runs under the caller's deadline; raises what the SDK's call would raise."""
        assert self._channel is not None
        version = self.client.protocol_version
        params: dict[str, Any] = {"name": tool, "arguments": arguments}
        stamped = {**(meta or {}), **self._modern_stamp()} if self.modern else meta
        if stamped:
            params["_meta"] = stamped
        try:
            answer = await self._channel.request("tools/call", params, timeout_s)
        except ChannelLost as error:
            raise UpstreamLost(f"{self.config.name}: connection closed after the call was sent") from error
        except ConnectionError as error:
            raise UpstreamUnavailable(f"{self.config.name}: connection closed") from error
        except ValueError:  # NaN or infinity in the arguments: the SDK's client sends them as null;
            # a lone surrogate: the SDK's client cannot write it and that call alone fails
            return _upstream_result(await self.client.call_tool(tool, arguments, meta=meta))
        if "error" in answer:
            error = types.ErrorData.model_validate(answer["error"])
            raise MCPError(code=error.code, message=error.message, data=error.data)
        raw = answer.get("result")
        if not isinstance(raw, dict):
            raise RuntimeError("the answer has no result object")
        plain = _plain_result(version, raw)
        if plain is not None:
            content, structured, is_error = plain
            if is_error or _structured_passes(self.client.session, tool, structured):
                return UpstreamResult(content=content, structured=structured, is_error=is_error)
        try:
            spec_methods.validate_server_result("tools/call", version, raw)
        except ValidationError:
            raise
        except ValueError as error:  # its dump: a result nested deeper than pydantic serialises
            raise RuntimeError(f"the result cannot be serialised ({error})") from error
        later = _later_revision_fields(version)
        if later and not later.isdisjoint(raw):
            raw = {key: value for key, value in raw.items() if key not in later}
        if raw.get("resultType") == "input_required":
            pending = types.InputRequiredResult.model_validate(raw, by_name=False)
            if pending.input_requests:
                # The SDK's client would hand them to its callbacks, and the gateway has none.
                return _error_result(f"MCP error {types.INVALID_REQUEST}: the server asked for input "
                                     f"({', '.join(sorted(pending.input_requests))}), which the gateway cannot give")
            # Only state to echo (work still going on): the SDK's client polls on from here.
            return _upstream_result(await self.client.call_tool(tool, arguments, request_state=pending.request_state,
                                                                meta=meta))
        result = types.CallToolResult.model_validate(raw, by_name=False)
        if not result.is_error and not _needs_no_schema_check(self.client.session, tool, result):
            await self.client.session.validate_tool_result(tool, result)
        return _upstream_result(result)

    def _modern_stamp(self) -> dict[str, Any]:
        """The `_meta` envelope every 2026-era request carries, as the SDK's session stamps it."""
        if self._stamp is None:
            self._stamp = {
                types.PROTOCOL_VERSION_META_KEY: self.client.protocol_version,
                types.CLIENT_INFO_META_KEY: _dump(CLIENT_INFO),
                types.CLIENT_CAPABILITIES_META_KEY: _dump(types.ClientCapabilities()),
            }
        return self._stamp

    def _mcp_error(self, error: MCPError, tool: str) -> UpstreamResult:
        if error.code == types.CONNECTION_CLOSED or self.closed.is_set():
            raise UpstreamUnavailable(f"{self.config.name}: connection closed") from error
        if error.code == types.REQUEST_TIMEOUT:
            raise UpstreamTimeout(f"{self.config.name}: {tool} timed out") from error
        return _error_result(f"MCP error {error.code}: {error.message}")

    def _invalid(self, error: Exception) -> UpstreamResult:
        # The SDK raises these for a closed client or a result that breaks the
        # tool's declared output schema; only the former is the connection's fault.
        if self.closed.is_set():
            raise UpstreamUnavailable(f"{self.config.name}: connection closed") from error
        return _error_result(f"invalid result from upstream: {error}")

    async def probe(self) -> None:
        """A cheap round trip: `ping` on handshake-era connections, `server/discover` on 2026 ones.

        Raises:
            MCPError: the server answered with an error or the connection closed.
        """
        if self.modern:
            await self.client.session.send_discover(self.client.protocol_version)
        else:
            await self.client.session.send_ping()

    async def listen_for_changes(
        self,
        on_list_changed: Callable[[], None],
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Keep a `subscriptions/listen` stream open (2026 era only) until cancelled.

        Reports started once the first stream is acknowledged (or at once when there is
        none to open), so a caller can subscribe first and list second without missing
        a change in between. Events are teed to the message handler, which does the
        triggering; a lost stream is re-opened and counts as a change.
        """
        started = False
        try:
            while self.modern:
                try:
                    async with self.client.listen(
                        tools_list_changed=True, resources_list_changed=True, prompts_list_changed=True
                    ) as subscription:
                        if not started:
                            started = True
                            task_status.started()
                        async for _event in subscription:
                            pass
                    return
                except (ListenNotSupportedError, MCPError) as error:
                    logger.debug("%s: no subscriptions/listen (%s)", self.config.name, error)
                    return
                except (SubscriptionLost, TimeoutError) as error:
                    if self.closed.is_set():
                        return
                    logger.info("%s: change subscription lost (%s); re-listening", self.config.name, error)
                    on_list_changed()
                await anyio.sleep(_RELISTEN_DELAY_S)
        finally:
            if not started:
                task_status.started()


@asynccontextmanager
async def open_session(
    config: UpstreamConfig, on_list_changed: Callable[[], None]
) -> AsyncIterator[UpstreamSession]:
    """Connect to one upstream and yield its session; closing stops a stdio child for good."""

    async def message_handler(message: Any) -> None:
        if isinstance(message, _LIST_CHANGED):
            on_list_changed()
        elif isinstance(message, Exception):
            logger.warning("%s: transport error: %s", config.name, message)
        await anyio.lowlevel.checkpoint()

    async with TRANSPORTS[config.transport](config) as opened:
        client = Client(
            opened.transport,
            mode="auto",
            cache=None,
            client_info=CLIENT_INFO,
            message_handler=message_handler,
        )
        async with client:
            session = UpstreamSession(config, client, opened)
            await session.lookup_pid()
            yield session

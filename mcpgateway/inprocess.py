"""An in-process toolbox with the gateway's interface, for engine tests and dry runs.

Tools are Python callables registered by name; grants map an agent name to the tool
names it may call (deny by default, `"*"` allows all). It writes no audit: the real
gateway does that.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mcpgateway.types import Principal, ToolDenied, ToolInvocation, ToolResult, ToolSpec

ToolFunction = Callable[..., Any]


@dataclass(slots=True)
class _Registered:
    spec: ToolSpec
    func: ToolFunction


class InProcessToolbox:
    """Tools as local callables, with per-agent grants."""

    def __init__(self, grants: dict[str, list[str]] | None = None):
        self._tools: dict[str, _Registered] = {}
        self.grants = grants if grants is not None else {}

    def register(self, name: str, func: ToolFunction, description: str = "", input_schema: dict | None = None) -> None:
        schema = input_schema or {"type": "object", "properties": {}}
        self._tools[name] = _Registered(ToolSpec(name, description or (func.__doc__ or "").strip(), schema), func)

    def _allowed(self, principal: Principal) -> set[str]:
        granted = self.grants.get(principal.agent or "", []) + self.grants.get("*", [])
        return set(self._tools) if "*" in granted else set(granted) & set(self._tools)

    async def list_tools(self, principal: Principal) -> list[ToolSpec]:
        allowed = self._allowed(principal)
        return [t.spec for name, t in sorted(self._tools.items()) if name in allowed]

    async def call_tool(self, invocation: ToolInvocation) -> ToolResult:
        if invocation.name not in self._allowed(invocation.principal):
            raise ToolDenied(f"tool {invocation.name!r} is not granted to agent {invocation.principal.agent!r}")
        func = self._tools[invocation.name].func
        try:
            value = func(**invocation.arguments)
            if inspect.isawaitable(value):
                value = await value
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a tool's failure is data for the model, not a crash
            return ToolResult(content=f"{type(exc).__name__}: {exc}", is_error=True)
        if isinstance(value, ToolResult):
            return value
        if isinstance(value, str):
            return ToolResult(content=value)
        return ToolResult(content=json.dumps(value, sort_keys=True), data=value if isinstance(value, dict) else None)

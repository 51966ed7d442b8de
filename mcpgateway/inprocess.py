"""An in-process toolbox with the gateway's interface, for tests, demos and dry runs.

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


def _word_count(text: str) -> dict[str, int]:
    """Count the words and lines of a text."""
    return {"words": len(text.split()), "lines": len(text.splitlines()) or (1 if text else 0)}


def _lint_python(code: str) -> dict[str, Any]:
    """Check that Python source parses; report the first syntax error."""
    import ast

    try:
        ast.parse(code)
    except SyntaxError as exc:
        return {"ok": False, "error": f"line {exc.lineno}: {exc.msg}"}
    return {"ok": True, "error": None}


def _scan_secrets(code: str) -> dict[str, Any]:
    """Look for hard-coded credentials and dangerous calls in source code."""
    findings = [
        marker
        for marker in ("password =", "api_key =", "eval(", "exec(", "os.system(", "subprocess", "pickle.loads")
        if marker in code
    ]
    return {"findings": findings, "clean": not findings}


def demo_toolbox() -> InProcessToolbox:
    """The tools the demo agents use until the MCP gateway serves real servers."""
    box = InProcessToolbox(grants={"coder": ["text__word_count"], "security": ["code__lint", "code__scan"], "reviewer": ["code__lint"]})
    text_schema = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
    code_schema = {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]}
    box.register("text__word_count", _word_count, input_schema=text_schema)
    box.register("code__lint", _lint_python, input_schema=code_schema)
    box.register("code__scan", _scan_secrets, input_schema=code_schema)
    return box


def team_toolbox(team_id: int) -> InProcessToolbox:
    """The default toolbox for a team's runs until the gateway dispatches to real servers."""
    return demo_toolbox()

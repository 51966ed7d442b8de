"""A small built-in MCP server (stdio) with code-checking tools, used by the demo agents.

Run as `python -m mcpgateway.builtin.code_tools`. It parses and scans code; it never
executes it (executing agent code is the sandbox server's job).
"""

from __future__ import annotations

import ast

from mcp.server.mcpserver import MCPServer

server = MCPServer("agentdeck-code-tools")

DANGEROUS = ("eval(", "exec(", "os.system(", "subprocess", "pickle.loads", "__import__(")
CREDENTIALS = ("password =", "api_key =", "secret =", "token =")


@server.tool()
def lint(code: str) -> dict:
    """Check that Python source parses; report the first syntax error."""
    try:
        ast.parse(code)
    except SyntaxError as exc:
        return {"ok": False, "error": f"line {exc.lineno}: {exc.msg}"}
    return {"ok": True, "error": None}


@server.tool()
def scan(code: str) -> dict:
    """Look for hard-coded credentials and dangerous calls in source code."""
    findings = [marker for marker in (*DANGEROUS, *CREDENTIALS) if marker in code]
    return {"findings": findings, "clean": not findings}


@server.tool()
def word_count(text: str) -> dict:
    """Count the words and lines of a text."""
    return {"words": len(text.split()), "lines": len(text.splitlines()) or (1 if text else 0)}


if __name__ == "__main__":
    server.run("stdio")

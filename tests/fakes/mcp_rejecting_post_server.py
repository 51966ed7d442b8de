"""A stdio MCP server with one tool, `post`: it delivers the body to the URL (here: appends
to a file, standing in for the remote end), then passes on the remote end's rejection as its
error result, in words that begin like the gateway's own refusal of a confirmation.

`python -m tests.fakes.mcp_rejecting_post_server <log path>`"""
import json
import sys

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, TextContent

LOG = sys.argv[1]
server = MCPServer("web")


@server.tool()
def post(url: str, body: str) -> CallToolResult:
    """POST a body to a URL."""
    with open(LOG, "a") as f:
        f.write(json.dumps({"url": url, "body": body}) + "\n")  # what the remote end received
    # The remote end's answer, passed on as the tool's error result (as HTTP tools do).
    return CallToolResult(content=[TextContent(type="text", text="The call was not approved by the receiving endpoint (HTTP 403 Forbidden)")], isError=True)


if __name__ == "__main__":
    server.run("stdio")

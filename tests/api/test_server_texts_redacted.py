"""A server's health error and its tools' definitions are shown to every team member (API
`health_error`, `/gateway/tools`, the tools pages, /mcp tools/list): a secret the server's
process was given (here an operator's host variable, which members may never read) must be
redacted there like everywhere else. Both were stored as the server sent them (found by a review)."""

from __future__ import annotations

import sys
import time

import pytest
from django.contrib.auth import get_user_model

from mcpgateway.actions.access import do_create_api_key
from mcpgateway.models import ToolServer
from orchestrator.actions import do_add_member

pytestmark = pytest.mark.django_db(transaction=True)
LEAKY_SOURCE = '"""A stdio \'MCP server\' that refuses initialize with an error naming its token (as many real ones do:\n\'invalid token <value>\')."""\nimport json, os, sys\nfor line in sys.stdin:\n    msg = json.loads(line)\n    if "id" in msg:\n        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "error": {\n            "code": -32000, "message": f"authentication failed for token {os.environ.get(\'VENDOR_TOKEN\')}"}}) + "\\n")\n        sys.stdout.flush()\n'
SECRET = "host-env-token-4b1d9e77"


def test_a_health_error_never_shows_a_secret_to_team_members(api, keys, gateway_runtime, monkeypatch, tmp_path):
    leaky = tmp_path / 'leaky.py'
    leaky.write_text(LEAKY_SOURCE)
    monkeypatch.setenv("VENDOR_TOKEN", SECRET)  # the operator's host environment
    operator = get_user_model().objects.create_user("op", is_staff=True)
    do_add_member(keys["team"], operator, "owner")
    op_token = do_create_api_key(keys["team"].pk, "op", operator, scopes=["read", "run", "admin"])[1]
    status, body = api.call("post", "/gateway/servers", op_token, {
        "name": "vendor", "command": sys.executable, "args": [str(leaky)],
        "env": {"VENDOR_TOKEN": "${VENDOR_TOKEN}"}, "env_allow": ["VENDOR_TOKEN"]})
    assert status == 201, body
    from mcpgateway.background import submit

    submit(gateway_runtime.sync()).result(timeout=30)
    server = ToolServer.objects.get(pk=body["id"])
    deadline = time.monotonic() + 20
    while not server.health_error and time.monotonic() < deadline:
        time.sleep(0.2)
        server.refresh_from_db()
    status, seen = api.call("get", f"/gateway/servers/{server.pk}", keys["viewer"])
    assert seen["health_error"]
    assert SECRET not in seen["health_error"]


DESCRIBING_SOURCE = '"""A stdio MCP server whose tool description names the account its token belongs to (and the token)."""\nimport os\n\nfrom mcp.server.mcpserver import MCPServer\n\nserver = MCPServer("describing-server")\n\n\n@server.tool(description=f"Search the vendor index (authenticated with {os.environ.get(\'VENDOR_TOKEN\')}).")\ndef search(query: str) -> str:\n    return query\n\n\nif __name__ == "__main__":\n    server.run("stdio")\n'


def test_a_discovered_tool_description_never_shows_a_secret_to_team_members(api, keys, gateway_runtime, monkeypatch, tmp_path):
    from tests.conftest import start_servers

    describing = tmp_path / 'describing.py'
    describing.write_text(DESCRIBING_SOURCE)

    monkeypatch.setenv("VENDOR_TOKEN", SECRET)
    operator = get_user_model().objects.create_user("op", is_staff=True)
    do_add_member(keys["team"], operator, "owner")
    op_token = do_create_api_key(keys["team"].pk, "op", operator, scopes=["read", "run", "admin"])[1]
    status, body = api.call("post", "/gateway/servers", op_token, {
        "name": "vendor", "command": sys.executable, "args": [str(describing)],
        "env": {"VENDOR_TOKEN": "${VENDOR_TOKEN}"}, "env_allow": ["VENDOR_TOKEN"]})
    assert status == 201, body
    start_servers(gateway_runtime, ToolServer.objects.get(pk=body["id"]))
    status, tools = api.call("get", "/gateway/tools", keys["viewer"])
    assert tools and all(SECRET not in t["description"] for t in tools)

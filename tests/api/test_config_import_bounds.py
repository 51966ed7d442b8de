"""Config import: a value the database cannot hold (too long, a NUL, a header name past the
secret name's column) is refused naming its path — on PostgreSQL it was a 500 in the
dashboard and a 422 naming no field in the API (found by a review)."""
from __future__ import annotations

import pytest
from django.test import Client

from mcpgateway.models import ToolServer

pytestmark = pytest.mark.django_db(transaction=True)

LONG_DESCRIPTION = "servers:\n  svc: {url: 'https://svc.example/mcp', transport: http, description: '" + "d" * 400 + "'}\n"
NUL_DESCRIPTION = 'servers:\n  svc: {url: "https://svc.example/mcp", transport: http, description: "a\\0b"}\n'
LONG_URL = "servers:\n  svc: {url: 'https://svc.example/" + "p" * 600 + "', transport: http}\n"
LONG_HEADER_NAME = "servers:\n  svc: {url: 'https://svc.example/mcp', transport: http, headers: {" + "H" * 150 + ": literal-token}}\n"


@pytest.mark.parametrize("text", [LONG_DESCRIPTION, NUL_DESCRIPTION, LONG_URL, LONG_HEADER_NAME],
                         ids=["long-description", "nul-description", "long-url", "long-header-name"])
def test_dashboard_import_answers_400_naming_the_field(team, owner, text):
    client = Client(raise_request_exception=False)
    client.force_login(owner)
    response = client.post("/tools/config/import/", {"config": text, "secrets": ""})
    assert response.status_code == 400, response.status_code
    assert "servers.svc" in response.content.decode()
    assert not ToolServer.objects.exists()


@pytest.mark.parametrize("text", [LONG_DESCRIPTION, NUL_DESCRIPTION, LONG_URL, LONG_HEADER_NAME],
                         ids=["long-description", "nul-description", "long-url", "long-header-name"])
def test_api_import_names_the_field(api, keys, text):
    status, body = api.call("post", "/gateway/servers/import", keys["builder"], {"text": text})
    assert status in (400, 422), (status, body)
    assert (body["error"].get("field") or "").startswith("servers.svc"), body

"""Discovered tool definitions are redacted with the server's own secrets, in their prose only.
A first version used the instance-wide redactor (every team's secrets, down to 6 characters)
over whole schemas: a builder of team A who stored a secret `object` had team B's tools stored
with `"type": "[REDACTED:…]"`, and on their next discovery all of them went on hold (found by
a review of that change)."""
from __future__ import annotations

import sys
import time

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model

from mcpgateway import redaction
from mcpgateway.actions.server_lifecycle import do_restart_server
from mcpgateway.actions.servers import do_save_server
from mcpgateway.models import Tool
from orchestrator.actions import do_create_team
from tests.conftest import start_servers

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("outbound_allows_loopback")]


def _team_b_echo(gateway_runtime):
    owner_b = get_user_model().objects.create_user("bob")
    team_b = do_create_team("B", owner_b)
    server = do_save_server(team_b.pk, "echo", transport="stdio", command=sys.executable,
                            args=["-m", "tests.fakes.mcp_echo_server"], cwd=str(settings.BASE_DIR), operator=True)
    start_servers(gateway_runtime, server)
    return server


def _team_a_member_secret(value: str):
    alice = get_user_model().objects.create_user("alice")
    team_a = do_create_team("A", alice)
    # A team member's remote server with a header secret (operator=False: a member's own action).
    do_save_server(team_a.pk, "mine", transport="http", url="http://127.0.0.1:9/mcp",
                   headers={"X-Token": value}, operator=False)
    redaction.invalidate()


def test_another_teams_secret_rewrites_and_holds_my_tools(gateway_runtime):
    server = _team_b_echo(gateway_runtime)
    echo = Tool.objects.get(server=server, name="echo")
    assert echo.status == "active" and echo.input_schema["type"] == "object"

    _team_a_member_secret("object")

    seen = echo.last_seen
    do_restart_server(server, operator=True)  # any reconnect rediscovers (a restart, a crash, a deploy)
    deadline = time.monotonic() + 30
    while Tool.objects.get(pk=echo.pk).last_seen == seen:  # the rediscovery was recorded
        assert time.monotonic() < deadline, "no rediscovery"
        time.sleep(0.1)
    echo.refresh_from_db()
    statuses = set(Tool.objects.filter(server=server).values_list("status", flat=True))
    assert echo.input_schema.get("type") == "object", "team B's schema was rewritten by team A's secret"
    assert statuses == {"active"}, "team B's tools were put on hold by team A's secret"


def test_a_servers_own_secret_is_redacted_from_prose_only():
    from types import SimpleNamespace

    from mcpgateway.actions.catalogue import redacted_definition

    found = SimpleNamespace(description="Search with token tok-12345678 (type object).", annotations={"title": "tok-12345678"},
                            input_schema={"type": "object", "properties": {"q": {"type": "string", "default": "tok-12345678",
                                                                                 "description": "uses tok-12345678"}}},
                            output_schema=None)
    definition = redacted_definition(found, ["tok-12345678", "object"])
    assert "tok-12345678" not in str(definition) and "[REDACTED:" in definition["description"]
    assert definition["input_schema"]["type"] == "object" and definition["input_schema"]["properties"]["q"]["type"] == "string"

"""One caller's arguments that cannot be written to a stdio server (a lone surrogate, which
JSON's `\\udc80` escape gives and `json.loads` accepts; with NaN, which sends the call down the
SDK client's path) fail that call alone, at once: the pipe, the server process and every
other caller's call on it carry on. Real /mcp endpoint over HTTP, real stdio echo server."""

from __future__ import annotations

import json
import threading
import time

import httpx2
import pytest
from mcp_types import CLIENT_CAPABILITIES_META_KEY, PROTOCOL_VERSION_META_KEY

from mcpgateway.dispatch import Gateway
from mcpgateway.downstream import build_mcp_app
from mcpgateway.runtime import get_runtime
from orchestrator.api_auth import authenticate_mcp
from tests.mcpgateway.test_downstream import ServedEndpoint
from tests.mcpgateway.test_mcp_fast_path import echo_team  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db(transaction=True)
MODERN = "2026-07-28"


def _call(url: str, token: str, name: str, raw_arguments: str, request_id: int) -> dict:
    meta = json.dumps({PROTOCOL_VERSION_META_KEY: MODERN, CLIENT_CAPABILITIES_META_KEY: {}})
    body = (f'{{"jsonrpc":"2.0","id":{request_id},"method":"tools/call","params":{{"name":"{name}",'
            f'"arguments":{raw_arguments},"_meta":{meta}}}}}').encode()  # the arguments raw: NaN, escapes
    answer = httpx2.post(url, content=body, timeout=30, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json", "Accept": "application/json",
        "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": name})
    assert answer.status_code == 200, answer.text
    return answer.json()


def _text(answer: dict) -> str:
    return answer["result"]["content"][0]["text"]


@pytest.mark.parametrize("poison", ['{"message":"x","n":NaN,"s":"\\udc80"}', '{"message":"x\\udc80y"}'],
                         ids=["with-nan-sdk-path", "short-path"])
def test_arguments_that_cannot_be_written_fail_their_call_alone_and_at_once(echo_team, poison):  # noqa: F811
    _, server, _, token = echo_team
    endpoint = build_mcp_app(authenticate=authenticate_mcp, toolbox=Gateway(defer_audit=True), allowed_hosts=["127.0.0.1"])
    with ServedEndpoint(endpoint) as served:
        deadline = time.monotonic() + 30  # (marked up with its pid a moment after its tools are recorded)
        while (health := get_runtime().health(f"s{server.pk}")) is None or health.pid is None:
            assert time.monotonic() < deadline, "the server was never marked up"
            time.sleep(0.02)
        pid, restarts = health.pid, health.restarts
        bystander: dict = {}
        thread = threading.Thread(target=lambda: bystander.update(
            answer=_call(served.url, token, "echo__slow", '{"seconds":2}', 99)))
        thread.start()
        time.sleep(0.5)  # the bystander's call is in flight on the same pipe
        started = time.monotonic()
        refused = _call(served.url, token, "echo__echo", poison, 1)
        assert time.monotonic() - started < 5  # not the 60 s call deadline
        assert refused["result"]["isError"] is True, refused
        thread.join(timeout=30)
        assert bystander["answer"]["result"].get("isError") is not True, bystander
        after = _call(served.url, token, "echo__echo", '{"message":"after"}', 2)
        assert after["result"].get("isError") is not True and "after" in _text(after), after
        health = get_runtime().health(f"s{server.pk}")
        assert (health.pid, health.restarts) == (pid, restarts)  # the server was never restarted

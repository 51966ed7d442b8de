"""One trace per run, across processes: the API request in the web process, the run on a
Celery worker, the gateway's dispatch and an HTTP upstream MCP server — GenAI spans captured
by a real OTLP/HTTP receiver on loopback."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from django.conf import settings

from mcpgateway.actions.access import do_create_api_key, do_grant
from mcpgateway.actions.servers import do_save_server
from orchestrator.models import Run, RunEvent
from tests.conftest import pipeline, scripted, serving
from tests.fakes.otlp_receiver import OTLPReceiver
from tests.orchestrator.test_celery import BROKER, Workers, _wait, broker  # noqa: F401 - the broker fixture

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
INCOMING = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_echo_server(port: int) -> subprocess.Popen:
    code = ("import uvicorn\nfrom tests.fakes.mcp_echo_server import build_server\n"
            f"uvicorn.run(build_server().streamable_http_app(json_response=True), host='127.0.0.1', port={port}, log_level='warning')")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=settings.BASE_DIR)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            assert time.monotonic() < deadline, "the HTTP echo server did not start"
            time.sleep(0.1)


def test_one_trace_from_the_api_request_to_the_upstream_server(team, owner, broker, tmp_path, settings):  # noqa: F811
    settings.AGENTDECK_OUTBOUND_ALLOW = ["127.0.0.1"]  # the echo server is on loopback
    port = free_port()
    upstream = http_echo_server(port)
    server = do_save_server(team.pk, "echo", transport="http", url=f"http://127.0.0.1:{port}/mcp", operator=True)
    do_grant(server, agent="calc")
    scripted(team, "calc", {"tool_calls": [{"name": "echo__header", "arguments": {"name": "traceparent"}}]},
             {"text": "saw {{last}}"})
    pipe = pipeline(team, {"steps": [{"kind": "agent", "id": "calc", "agent": "calc", "prompt": "go"}]}, name="traced")
    _, token = do_create_api_key(team.pk, "k", user=owner)

    with OTLPReceiver() as receiver:
        otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "CELERY_BROKER_URL": BROKER, "AGENTDECK_RUNNER": "celery",
                "AGENTDECK_OUTBOUND_ALLOW": "127.0.0.1"}
        workers = Workers(tmp_path, 1, gateway=True, env={**otel, "OTEL_SERVICE_NAME": "agentdeck-worker"})
        try:
            with serving({**otel, "OTEL_SERVICE_NAME": "agentdeck-web"}) as base:
                request = urllib.request.Request(f"{base}/api/v1/runs", method="POST",
                                                 data=json.dumps({"pipeline": pipe.pk, "input": {}}).encode(),
                                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                                                          "traceparent": INCOMING})
                run_id = json.loads(urllib.request.urlopen(request, timeout=10).read())["id"]
                _wait(lambda: Run.objects.get(pk=run_id).is_finished, timeout=90)
                _wait(lambda: receiver.named("POST /api/v1/runs"), timeout=15)
        finally:
            workers.stop()  # the worker flushes its spans as it exits
            upstream.terminate()
        _wait(lambda: receiver.named("execute_tool"), timeout=15)

    run = Run.objects.get(pk=run_id)
    assert run.status == "succeeded", run.error
    web = receiver.named("POST /api/v1/runs")[0]
    (root,) = receiver.named("run traced")
    (agent,) = receiver.named("invoke_agent calc")
    chats = receiver.named("chat scripted-1")
    (dispatch,) = receiver.named("mcpgateway.dispatch")
    (tool,) = receiver.named("execute_tool echo__header")
    # One trace id, continued from the caller's traceparent, across both processes.
    assert {s["trace_id"] for s in [web, root, agent, dispatch, tool, *chats]} == {TRACE_ID}
    assert web["service"] == "agentdeck-web" and root["service"] == tool["service"] == "agentdeck-worker"
    # The span tree.
    assert web["parent_span_id"] == "00f067aa0ba902b7" and root["parent_span_id"] == web["span_id"]
    assert agent["parent_span_id"] == root["span_id"]
    assert len(chats) == 2 and all(c["parent_span_id"] == agent["span_id"] for c in chats)
    assert dispatch["parent_span_id"] == agent["span_id"] and tool["parent_span_id"] == dispatch["span_id"]
    # GenAI attributes.
    assert agent["attributes"]["gen_ai.operation.name"] == "invoke_agent" and agent["attributes"]["gen_ai.agent.name"] == "calc"
    chat = chats[0]["attributes"]
    assert (chat["gen_ai.operation.name"], chat["gen_ai.provider.name"], chat["gen_ai.request.model"]) == ("chat", "scripted", "scripted-1")
    assert chat["gen_ai.usage.input_tokens"] > 0 and chat["gen_ai.usage.output_tokens"] > 0
    call_id = RunEvent.objects.get(run_id=run_id, type="tool.finished").data["call_id"]
    assert tool["attributes"]["gen_ai.tool.name"] == "echo__header" and tool["attributes"]["gen_ai.tool.call.id"] == call_id
    # The MCP SDK's own client span nests under execute_tool, and the HTTP upstream received
    # this trace's context as its `traceparent` header.
    (send,) = receiver.named("MCP send tools/call")
    assert send["trace_id"] == TRACE_ID and send["parent_span_id"] == tool["span_id"]
    seen = run.output["result"].removeprefix("saw ").strip()
    assert seen.split("-")[1:3] == [TRACE_ID, send["span_id"]]

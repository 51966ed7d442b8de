"""A model that repeats every kind of secret, raw and encoded, into its deltas, its tool
calls (to another server's tool, and to a denied one) and its answer: afterwards no value
appears in the database, the live deltas, the logs (JSON and text) or the exported trace;
the trace verifies; markers are keyed, not a plain hash of the value."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import sys
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import connection

from config.logging import JsonFormatter, TextFormatter
from mcpgateway import redaction
from mcpgateway.actions.access import do_create_api_key, do_grant
from mcpgateway.actions.servers import do_save_server
from mcpgateway.models import AuditEntry
from orchestrator import providers
from orchestrator.engine.types import ModelRequest, ModelResponse
from orchestrator.execution import execute_run
from orchestrator.models import Run
from orchestrator.providers.scripted import ScriptedProvider
from orchestrator.trace_files import export_trace, verify_trace
from orchestrator.webhooks import do_create_webhook
from tests.conftest import pipeline, scripted, start, start_servers

ROOT = str(settings.BASE_DIR)
SERVER_SECRET = 'va"ul\\t-Secret-9f3kQ'  # a `"` and a `\`: JSON escapes both
PROVIDER_KEY = "sk-test-Provider-Key-77a1b2c3d4"
METRICS_TOKEN = "metrics-Token-55xx1-zz"
SPEC = {"steps": [{"kind": "agent", "id": "work", "agent": "worker", "prompt": "go"}]}
_secrets: dict[str, str] = {}  # held in memory only: the agent's stored script names them by placeholder


def forms(value: str) -> set[str]:
    """How a value looks raw, JSON-escaped, URL-encoded and base64-encoded."""
    raw = value.encode()
    b64 = {base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()}
    return {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1], quote(value, safe=""),
            quote_plus(value), *b64, *(b.rstrip("=") for b in b64)}


def expand(text: str) -> str:
    for name, value in _secrets.items():
        text = text.replace(f"<<{name}>>", value).replace(f"<<b64:{name}>>", base64.b64encode(value.encode()).decode())
        text = text.replace(f"<<url:{name}>>", quote_plus(value)).replace(f"<<json:{name}>>", json.dumps(value)[1:-1])
    return text


def filled(value: Any) -> Any:
    if isinstance(value, str):
        return expand(value)
    if isinstance(value, dict):
        return {k: filled(v) for k, v in value.items()}
    if isinstance(value, list):
        return [filled(v) for v in value]
    return value


class LeakyProvider(ScriptedProvider):
    """The scripted provider with `<<name>>`, `<<b64:name>>`, `<<url:name>>`, `<<json:name>>`
    in its replies filled with the secrets (so the agent row itself holds none), and a
    component that logs what the model said."""

    name = "leaky"

    async def complete(self, request: ModelRequest, on_delta=None) -> ModelResponse:
        request.options = filled(request.options)
        response = await super().complete(request, on_delta)
        logging.getLogger("tests.leaky").warning("the model said %s and called %s", response.text,
                                                 [c.arguments for c in response.tool_calls])
        return response


def everything(*kinds: str) -> str:
    return " ".join(f"<<{k}:{n}>>" if k else f"<<{n}>>" for n in ("server", "provider", "webhook", "token", "metrics")
                    for k in kinds)


@dataclass
class Leak:
    run: Run
    secrets: dict[str, str]
    deltas: list[dict[str, Any]] = field(default_factory=list)
    logs: dict[str, str] = field(default_factory=dict)

    def find(self, text: str) -> list[str]:
        return [f"{name}: {form!r}" for name, value in self.secrets.items() for form in forms(value) if form in text]


@pytest.fixture
def leak(team, owner, gateway_runtime, monkeypatch, settings) -> Leak:
    monkeypatch.setenv("OPENAI_API_KEY", PROVIDER_KEY)
    settings.METRICS_TOKEN = METRICS_TOKEN
    monkeypatch.setitem(providers.PROVIDERS, "leaky", f"{__name__}.LeakyProvider")
    redaction.invalidate()  # settings and the environment are read at start-up; this test changed them
    vault = do_save_server(team.pk, "vault", transport="stdio", command=sys.executable, args=["-m", "tests.fakes.mcp_env_server"],
                           cwd=ROOT, env={"VAULT_TOKEN": SERVER_SECRET}, operator=True)
    echo = do_save_server(team.pk, "echo", transport="stdio", command=sys.executable, args=["-m", "tests.fakes.mcp_echo_server"],
                          cwd=ROOT, operator=True)
    do_grant(echo, agent="worker")  # vault is granted to nobody: calling it is denied
    start_servers(gateway_runtime, vault, echo)
    agent = scripted(team, "worker",
                     {"text": "Here they are: " + everything("", "b64", "url", "json"),
                      "tool_calls": [{"name": "echo__echo", "arguments": {"message": everything("", "b64")}},
                                     {"name": "vault__getenv", "arguments": {"name": everything("", "url")}}]},
                     {"text": "Final answer: " + everything("", "b64", "url", "json") + " and the echo: {{last}}"})
    agent.provider = "leaky"
    agent.save()
    pipe = pipeline(team, SPEC)
    _, webhook_secret = do_create_webhook(pipe, "https://93.184.216.34/hook")
    _, token = do_create_api_key(team.pk, "ci", owner)
    _secrets.update(server=SERVER_SECRET, provider=PROVIDER_KEY, webhook=webhook_secret, token=token, metrics=METRICS_TOKEN)

    streams = {"json": io.StringIO(), "text": io.StringIO()}
    handlers = []
    for kind, formatter in (("json", JsonFormatter()), ("text", TextFormatter("%(levelname)s %(name)s: %(message)s"))):
        handler = logging.StreamHandler(streams[kind])
        handler.setFormatter(formatter)
        handlers.append(handler)
        logging.getLogger().addHandler(handler)
    deltas: list[dict[str, Any]] = []
    try:
        async_to_sync(execute_run)(start(pipe).pk, listeners=[deltas.append])
    finally:
        for handler in handlers:
            logging.getLogger().removeHandler(handler)
    run = Run.objects.get(pipeline_version__pipeline=pipe)
    yield Leak(run, dict(_secrets), [d for d in deltas if d["type"] == "llm.delta"],
               {k: s.getvalue() for k, s in streams.items()})
    _secrets.clear()
    redaction.invalidate()


def database_text() -> str:
    """Every cell of every table, as stored."""
    cells = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            cells += [str(cell) for row in cursor.fetchall() for cell in row if cell is not None]
    return "\n".join(cells)


def test_it_keeps_every_secret_out_of_the_database(leak):
    assert leak.run.status == "succeeded", leak.run.error
    denied = AuditEntry.objects.get(run_id=leak.run.pk, tool_name="vault__getenv", status="denied")
    assert denied.arguments["name"].count("[REDACTED:") == 10
    assert AuditEntry.objects.filter(run_id=leak.run.pk, tool_name="echo__echo", status="ok").exists()

    assert leak.find(database_text()) == []


def test_it_keeps_every_secret_out_of_the_live_deltas(leak):
    streamed = "".join(d["data"]["text"] for d in leak.deltas)

    assert "Final answer: [REDACTED:" in streamed
    assert leak.find(streamed) == []


def test_it_keeps_every_secret_out_of_both_log_formats(leak):
    assert "the model said" in leak.logs["json"] and "the model said" in leak.logs["text"]
    assert leak.find(leak.logs["json"]) == [] and leak.find(leak.logs["text"]) == []


def test_it_exports_a_trace_that_holds_no_secret_and_verifies(leak):
    trace = export_trace(leak.run)

    assert leak.find(json.dumps(trace)) == [] and leak.find(json.dumps(trace, ensure_ascii=False)) == []
    assert verify_trace(json.loads(json.dumps(trace))).ok


def test_it_marks_secrets_with_a_keyed_digest_not_a_plain_hash(leak):
    output = json.dumps(leak.run.output)
    for name, value in leak.secrets.items():
        keyed = redaction.marker(value)
        assert keyed in output, name
        assert hashlib.sha256(value.encode()).hexdigest()[:16] not in output
        assert keyed != f"[REDACTED:{hashlib.sha256(value.encode()).hexdigest()[:16]}]"

"""JSON log lines: run, step and trace ids from where they are written; secrets redacted."""

from __future__ import annotations

import io
import json
import logging

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from config import tracing
from config.logging import JsonFormatter, redact_text
from mcpgateway.inprocess import InProcessToolbox
from tests.conftest import execute, pipeline, scripted, start

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def json_lines():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.tool")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)


@pytest.fixture
def traced():
    exporter = InMemorySpanExporter()
    tracing.setup_tracing(exporter, force=True)
    yield exporter
    tracing.shutdown()


def test_a_tools_log_line_carries_the_run_step_and_trace_and_no_secret(team, json_lines, traced, settings):
    settings.ANTHROPIC_API_KEY = "sk-ant-configured-secret-1234"

    def lookup(name: str) -> str:
        logging.getLogger("tests.tool").warning("looking up %s with api_key=hunter22-secret and %s", name,
                                                "sk-ant-configured-secret-1234")
        return "found"

    toolbox = InProcessToolbox(grants={"a": ["t__lookup"]})
    toolbox.register("t__lookup", lookup, "Look up", {"type": "object", "properties": {"name": {"type": "string"}}})
    scripted(team, "a", {"tool_calls": [{"name": "t__lookup", "arguments": {"name": "x"}}]}, {"text": "done"})
    run = execute(start(pipeline(team, {"steps": [{"kind": "agent", "id": "s1", "agent": "a", "prompt": "go"}]})), toolbox)

    (line,) = json_lines()
    assert line["run_id"] == run.pk and line["step"] == "s1" and line["level"] == "WARNING"
    spans = {s.context.span_id: s for s in traced.get_finished_spans()}
    assert int(line["trace_id"], 16) == next(iter(spans.values())).context.trace_id
    assert spans[int(line["span_id"], 16)].name == "invoke_agent a"
    assert "hunter22" not in line["message"] and "sk-ant-configured" not in line["message"]
    assert "api_key=[REDACTED]" in line["message"]


def test_redaction_shapes():
    text = redact_text("Authorization: Bearer abc.def-ghi_12345 key adk_0123456789abcdef sk-proj-ABCDEFGH12 password='x y'",
                       secrets=[])
    assert text == "Authorization: Bearer [REDACTED] key [REDACTED] [REDACTED] password=[REDACTED]"


def test_lines_stay_valid_json_whatever_is_redacted():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, 'token=abc123def "quoted" api_key: "k-123456"', (), None)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == 'token=[REDACTED] "quoted" api_key: [REDACTED]'

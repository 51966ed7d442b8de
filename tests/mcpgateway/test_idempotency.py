"""Idempotency keys and the started/completed audit, against a real stdio MCP server that
records every call with its `_meta` (tests/fakes/mcp_recording_server.py)."""

from __future__ import annotations

import sys
import threading
import time

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.utils import timezone

from mcpgateway.actions.access import do_grant
from mcpgateway.actions.servers import do_save_server
from mcpgateway.dispatch import Gateway, take_interrupted_calls
from mcpgateway.idempotency import META_KEY
from mcpgateway.models import AuditEntry, CallStatus, Tool
from mcpgateway.types import ToolInvocation, ToolResult
from tests.conftest import start_servers
from tests.fakes.mcp_recording_server import read_calls
from tests.mcpgateway.conftest import agent

ROOT = str(settings.BASE_DIR)


@pytest.fixture
def log(tmp_path):
    return str(tmp_path / "upstream.jsonl")


@pytest.fixture
def recorder(gateway_runtime, log):
    server = do_save_server(1, "rec", transport="stdio", command=sys.executable,
                            args=["-m", "tests.fakes.mcp_recording_server", log], cwd=ROOT, operator=True)
    do_grant(server, agent="a")
    start_servers(gateway_runtime, server)
    return server


def call(name: str, arguments: dict, **where) -> ToolResult:
    invocation = ToolInvocation(agent("a"), name, arguments, call_id="c1", **where)
    return async_to_sync(Gateway(1).call_tool)(invocation)


def test_it_sends_a_run_calls_idempotency_key_in_meta(recorder, log):
    call("rec__send", {"message": "hi"}, run_id=7, step_key="work", idempotency_key="run-7/work/1/1")

    (seen,) = read_calls(log)
    assert seen["meta"][META_KEY] == "run-7/work/1/1"
    assert AuditEntry.objects.get().idempotency_key == "run-7/work/1/1"


def test_it_sends_no_key_for_a_call_outside_a_run(recorder, log):
    call("rec__send", {"message": "hi"})

    (seen,) = read_calls(log)
    assert META_KEY not in (seen["meta"] or {})


def test_it_audits_the_call_as_started_before_the_upstream_call_and_completes_the_same_row(recorder, log, tmp_path):
    (tmp_path / "upstream.jsonl.hold").write_text("")
    caller = threading.Thread(target=call, args=("rec__send", {"message": "hi", "seconds": 3}),
                              kwargs={"run_id": 7, "step_key": "work", "idempotency_key": "run-7/work/1/1"})
    caller.start()
    deadline = time.monotonic() + 30
    while not read_calls(log):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    during = AuditEntry.objects.get()
    caller.join(30)

    after = AuditEntry.objects.get()
    assert during.status == CallStatus.STARTED and during.result is None
    assert (after.pk, after.status, after.result["content"]) == (during.pk, CallStatus.OK, "sent hi")


def test_it_takes_the_read_only_hint_from_the_server(recorder):
    tools = {t.name: t for t in Tool.objects.filter(server=recorder)}

    assert tools["lookup"].safe_to_retry and not tools["send"].safe_to_retry


def test_it_hands_the_read_only_hint_to_the_engine(recorder):
    """The data-flow policy never holds back a read-only call: the tool's spec says which are."""
    from mcpgateway import catalogue

    catalogue.invalidate()
    specs = {e.spec.name.split("__")[-1]: e.spec for e in catalogue.load(recorder.team_id).tools.values()}

    assert specs["lookup"].read_only is True and specs["send"].read_only is False


def test_it_lets_an_operator_override_the_hint(recorder):
    Tool.objects.filter(server=recorder, name="send").update(retry_safe=True)

    assert Tool.objects.get(server=recorder, name="send").safe_to_retry


def _row(key: str, status: str) -> None:
    AuditEntry.objects.create(team_id=1, principal_kind="agent", agent_name="a", run_id=7, tool_name="rec__send",
                              status=status, idempotency_key=key, created_at=timezone.now())


@pytest.mark.django_db
def test_it_marks_the_started_calls_of_a_resuming_run_interrupted():
    _row("run-7/work/1/1", CallStatus.OK)
    _row("run-7/work/1/3", CallStatus.STARTED)

    found = take_interrupted_calls(7, recorded={"run-7/work/1/1"})  # the completed call is in the ledger

    assert list(found) == ["run-7/work/1/3"]
    assert AuditEntry.objects.get(idempotency_key="run-7/work/1/3").status == CallStatus.INTERRUPTED
    # Without its ledger row (a crash between the two commits) the completed call comes back
    # as answered, with its audited result, not as interrupted.
    again = take_interrupted_calls(7)
    assert again["run-7/work/1/1"]["answered"] == CallStatus.OK and "answered" not in again["run-7/work/1/3"]


@pytest.mark.django_db
def test_it_keeps_a_call_interrupted_across_a_second_crash_until_it_completes():
    _row("run-7/work/1/1", CallStatus.INTERRUPTED)
    _row("run-7/work/1/3", CallStatus.INTERRUPTED)
    _row("run-7/work/1/3", CallStatus.OK)

    assert list(take_interrupted_calls(7, recorded={"run-7/work/1/3"})) == ["run-7/work/1/1"]

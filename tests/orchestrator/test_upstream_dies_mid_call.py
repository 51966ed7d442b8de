"""An upstream stdio MCP server that dies while a side-effecting call is in flight.

The server received the call (it records it, fsynced, before doing its work) and then
dies before answering. The call may have run: ARCHITECTURE says "a side effect happens
once or is shown as maybe". The gateway recorded `unavailable` instead, the model was told
the server was unavailable, and a model that tried again made the side effect a second time
under a *new* idempotency key (found by a review). Now the call is audited `interrupted` and
the run follows the interrupted-call rules: the step pauses for a human, who retries it with
the same key, skips it or gives its result.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings

from mcpgateway.actions.access import do_grant
from mcpgateway.actions.servers import do_save_server
from mcpgateway.models import AuditEntry, ToolServer
from orchestrator.execution import execute_run
from orchestrator.models import ReviewItem, RunEvent
from tests.conftest import pipeline, scripted, start, start_servers
from tests.fakes.mcp_recording_server import read_calls

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = str(settings.BASE_DIR)
SPEC = {"steps": [{"kind": "agent", "id": "work", "agent": "w", "prompt": "go"}]}


def test_a_side_effecting_call_whose_server_dies_mid_call_is_shown_as_maybe(team, gateway_runtime, tmp_path):
    log = tmp_path / "upstream.jsonl"
    (tmp_path / "upstream.jsonl.hold").write_text("")
    server = do_save_server(team.pk, "rec", transport="stdio", command=sys.executable,
                            args=["-m", "tests.fakes.mcp_recording_server", str(log)], cwd=ROOT, operator=True)
    do_grant(server, agent="w")
    start_servers(gateway_runtime, server)
    # The model sends, is told the server is unavailable, and (as a model would) tries again.
    scripted(team, "w",
             {"tool_calls": [{"name": "rec__send", "arguments": {"message": "wire $1M", "seconds": 30}}]},
             {"delay_ms": 4000, "tool_calls": [{"name": "rec__send", "arguments": {"message": "wire $1M"}}]},
             {"text": "done: {{last}}"})

    def killer():
        deadline = time.monotonic() + 30
        while not read_calls(str(log)) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(read_calls(str(log))[0]["pid"], signal.SIGKILL)  # the server dies after it got the call
        (tmp_path / "upstream.jsonl.hold").unlink()

    threading.Thread(target=killer, daemon=True).start()
    run = start(pipeline(team, SPEC))
    async_to_sync(execute_run)(run.pk)
    run.refresh_from_db()

    calls = read_calls(str(log))
    audit = list(AuditEntry.objects.filter(run_id=run.pk).order_by("id").values_list("status", "idempotency_key", "error"))
    finished = [e.data for e in RunEvent.objects.filter(run=run, type="tool.finished").order_by("seq")]
    # The first call may have run: recorded and shown as "maybe" (interrupted); the side effect
    # does not happen a second time, and a human is asked.
    assert audit[0][0] == "interrupted", f"first call recorded as {audit[0][0]!r}, not as 'may have run'"
    assert "may have run" in audit[0][2]
    assert len([c for c in calls if c["tool"] == "send"]) == 1, "the side effect happened twice"
    assert run.status == "waiting_review", (run.status, run.error)
    item = ReviewItem.objects.get(run=run)
    lost = item.context["interrupted_call"]
    assert (lost["tool"], lost["idempotency_key"]) == ("rec__send", calls[0]["meta"]["agentdeck.dev/idempotency-key"])
    assert finished == []  # the model was never told "unavailable"
    assert RunEvent.objects.filter(run=run, type="tool.interrupted").count() == 1


def test_the_reviewer_retries_the_lost_call_with_its_key_and_the_run_ends(team, owner, gateway_runtime, tmp_path):
    from orchestrator.actions import do_decide_review

    log = tmp_path / "upstream.jsonl"
    (tmp_path / "upstream.jsonl.hold").write_text("")
    server = do_save_server(team.pk, "rec", transport="stdio", command=sys.executable,
                            args=["-m", "tests.fakes.mcp_recording_server", str(log)], cwd=ROOT, operator=True)
    do_grant(server, agent="w")
    start_servers(gateway_runtime, server)
    scripted(team, "w", {"tool_calls": [{"name": "rec__send", "arguments": {"message": "wire $1M", "seconds": 30}}]},
             {"text": "done: {{last}}"})

    def killer():
        deadline = time.monotonic() + 30
        while not read_calls(str(log)) and time.monotonic() < deadline:
            time.sleep(0.05)
        (tmp_path / "upstream.jsonl.hold").unlink()  # the retry will not wait
        os.kill(read_calls(str(log))[0]["pid"], signal.SIGKILL)

    threading.Thread(target=killer, daemon=True).start()
    run = start(pipeline(team, SPEC))
    async_to_sync(execute_run)(run.pk)
    run.refresh_from_db()
    assert run.status == "waiting_review", run.error
    deadline = time.monotonic() + 30  # the supervisor restarts it: wait until it is up again
    while not ToolServer.objects.filter(pk=server.pk, health="up", restarts__gte=1).exists():
        assert time.monotonic() < deadline, "the server was not restarted"
        time.sleep(0.1)
    do_decide_review(ReviewItem.objects.get(run=run, status="pending"), owner, "retry", submit=False)
    async_to_sync(execute_run)(run.pk)
    run.refresh_from_db()
    keys = [c["meta"]["agentdeck.dev/idempotency-key"] for c in read_calls(str(log)) if c["tool"] == "send"]
    assert run.status == "succeeded" and len(keys) == 2 and keys[0] == keys[1], (run.status, run.error, keys)
    statuses = list(AuditEntry.objects.filter(run_id=run.pk).order_by("id").values_list("status", flat=True))
    assert statuses == ["interrupted", "ok"], statuses

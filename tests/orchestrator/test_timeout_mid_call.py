"""A step whose timeout fires while a side-effecting tool call is in flight.

The upstream got the call and is still working on it when the step's attempt is cancelled:
the call may have run. The step used to be retried at once as a new attempt — a new model
call, and the same side effect made again under a *new* idempotency key — while the first
call's audit row stayed `started` for good. Now the call is audited `interrupted` and the
interrupted-call rules apply: a tool that is safe to repeat (read-only or idempotent) lets
the step retry as before; any other pauses the step for a human, who retries the call with
its own key, skips it or gives its result.
"""

from __future__ import annotations

import sys
import threading
import time

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings

from mcpgateway.actions.access import do_grant
from mcpgateway.actions.servers import do_save_server
from mcpgateway.models import AuditEntry
from orchestrator.execution import execute_run
from orchestrator.models import ReviewItem, RunEvent
from tests.conftest import pipeline, scripted, start, start_servers
from tests.fakes.mcp_recording_server import read_calls

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = str(settings.BASE_DIR)


def _spec(timeout_s: float = 1.5) -> dict:
    return {"steps": [{"kind": "agent", "id": "work", "agent": "w", "prompt": "go", "timeout_s": timeout_s,
                       "retry": {"max_attempts": 3, "backoff_s": 0}}]}


def _server(team, gateway_runtime, tmp_path):
    log = tmp_path / "upstream.jsonl"
    (tmp_path / "upstream.jsonl.hold").write_text("")  # calls take their `seconds`
    server = do_save_server(team.pk, "rec", transport="stdio", command=sys.executable,
                            args=["-m", "tests.fakes.mcp_recording_server", str(log)], cwd=ROOT, operator=True)
    do_grant(server, agent="w")
    start_servers(gateway_runtime, server)
    return server, log


def test_a_side_effect_cut_off_by_the_step_timeout_is_not_made_again(team, owner, gateway_runtime, tmp_path):
    from orchestrator.actions import do_decide_review

    _, log = _server(team, gateway_runtime, tmp_path)
    # The send is still in flight when the attempt times out. (A second attempt's model would
    # be asked anew; it used to send again under a new key, 3 sends for 3 attempts.)
    scripted(team, "w",
             {"tool_calls": [{"name": "rec__send", "arguments": {"message": "wire $1M", "seconds": 5}}]},
             {"text": "done: {{last}}"})
    run = start(pipeline(team, _spec()))
    async_to_sync(execute_run)(run.pk)
    run.refresh_from_db()

    sends = [c for c in read_calls(str(log)) if c["tool"] == "send"]
    audit = list(AuditEntry.objects.filter(run_id=run.pk).order_by("id").values_list("status", "idempotency_key", "error"))
    assert len(sends) == 1, f"the side effect was made {len(sends)} times"
    assert [a[0] for a in audit] == ["interrupted"], audit
    assert "may have run" in audit[0][2]
    assert run.status == "waiting_review", (run.status, run.error)
    item = ReviewItem.objects.get(run=run, status="pending")
    lost = item.context["interrupted_call"]
    assert (lost["tool"], lost["idempotency_key"]) == ("rec__send", sends[0]["meta"]["agentdeck.dev/idempotency-key"])
    assert RunEvent.objects.filter(run=run, type="tool.interrupted").count() == 1
    assert not RunEvent.objects.filter(run=run, type="step.retrying").exists()

    # The reviewer retries the call: it is made again with its own key, now without the wait.
    (tmp_path / "upstream.jsonl.hold").unlink()
    do_decide_review(item, owner, "retry", submit=False)
    async_to_sync(execute_run)(run.pk)
    run.refresh_from_db()
    keys = [c["meta"]["agentdeck.dev/idempotency-key"] for c in read_calls(str(log)) if c["tool"] == "send"]
    assert run.status == "succeeded", (run.status, run.error)
    assert len(keys) == 2 and keys[0] == keys[1], keys
    statuses = list(AuditEntry.objects.filter(run_id=run.pk).order_by("id").values_list("status", flat=True))
    assert statuses == ["interrupted", "ok"], statuses


def test_a_read_only_call_cut_off_by_the_timeout_lets_the_step_retry(team, gateway_runtime, tmp_path):
    _, log = _server(team, gateway_runtime, tmp_path)
    # Each attempt's model asks for the same lookup; only the first one is held past the timeout.
    scripted(team, "w",
             {"tool_calls": [{"name": "rec__lookup", "arguments": {"query": "q", "seconds": 5}}]},
             {"text": "done: {{last}}"})

    def release() -> None:
        deadline = time.monotonic() + 30
        while not read_calls(str(log)) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)  # the first call has looked for the file by then, and waits
        (tmp_path / "upstream.jsonl.hold").unlink()

    threading.Thread(target=release, daemon=True).start()
    run = start(pipeline(team, _spec()))
    async_to_sync(execute_run)(run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded", (run.status, run.error)
    statuses = list(AuditEntry.objects.filter(run_id=run.pk).order_by("id").values_list("status", flat=True))
    assert statuses == ["interrupted", "ok"], statuses
    assert RunEvent.objects.filter(run=run, type="step.retrying").count() == 1
    assert [c["tool"] for c in read_calls(str(log))] == ["lookup", "lookup"]

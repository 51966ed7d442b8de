"""Both Celery workers killed while a tool call is in flight (a real stdio MCP server that
records every call with its `_meta`): a read-only call is made again with the same
idempotency key, a side-effecting one pauses the run for review; the audit shows the
interrupted call."""

from __future__ import annotations

import os
import signal
import sys

import pytest
from django.conf import settings
from django.utils import timezone

from mcpgateway.actions.access import do_grant
from mcpgateway.actions.servers import do_save_server
from mcpgateway.models import AuditEntry
from orchestrator.models import ReviewItem, Run, RunEvent
from tests.conftest import pipeline, scripted, start
from tests.fakes.mcp_recording_server import read_calls
from tests.orchestrator.test_celery import Workers, _submit, _wait, broker  # noqa: F401 - the broker fixture

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
ROOT = str(settings.BASE_DIR)
SPEC = {"steps": [{"kind": "agent", "id": "work", "agent": "w", "prompt": "go"}]}


def _interrupt(team, broker, tmp_path, tool: str, arguments: dict) -> Run:  # noqa: F811
    """Start a run whose call of `tool` is in flight when both workers die, then let one new worker resume it."""
    log = tmp_path / "upstream.jsonl"
    (tmp_path / "upstream.jsonl.hold").write_text("")  # the first call hangs until the workers are dead
    server = do_save_server(team.pk, "rec", transport="stdio", command=sys.executable,
                            args=["-m", "tests.fakes.mcp_recording_server", str(log)], cwd=ROOT, operator=True)
    do_grant(server, agent="w")
    scripted(team, "w", {"tool_calls": [{"name": f"rec__{tool}", "arguments": {**arguments, "seconds": 60}}]},
             {"text": "done: {{last}}"})
    workers = Workers(tmp_path, 2, gateway=True)
    try:
        run = start(pipeline(team, SPEC))
        _submit(broker, run)
        _wait(lambda: len(read_calls(str(log))) == 1, 90)
        for proc in workers.procs:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    finally:
        workers.stop()
    (tmp_path / "upstream.jsonl.hold").unlink()
    survivor = Workers(tmp_path, 1, gateway=True)
    try:
        _wait(lambda: Run.objects.get(pk=run.pk).lease_until < timezone.now(), 10)
        broker.send_task("orchestrator.tasks.requeue_stuck_runs_task")
        _wait(lambda: Run.objects.get(pk=run.pk).status in ("succeeded", "failed", "waiting_review"), 90)
    finally:
        survivor.stop()
    run.refresh_from_db()
    return run


def test_it_retries_an_interrupted_read_only_call_with_the_same_key(team, broker, tmp_path):  # noqa: F811
    run = _interrupt(team, broker, tmp_path, "lookup", {"query": "q"})

    assert run.status == "succeeded", run.error
    assert run.output["result"] == "done: found q"
    calls = read_calls(str(tmp_path / "upstream.jsonl"))
    keys = [c["meta"]["agentdeck.dev/idempotency-key"] for c in calls]
    assert keys == [f"run-{run.pk}/work/1/1"] * 2, "the upstream saw the same key twice"
    audit = list(AuditEntry.objects.filter(run_id=run.pk).order_by("id").values_list("status", "idempotency_key"))
    assert audit == [("interrupted", keys[0]), ("ok", keys[0])]
    assert RunEvent.objects.filter(run=run, type="tool.retrying_interrupted").count() == 1


def test_it_pauses_for_review_when_an_interrupted_call_has_side_effects(team, broker, tmp_path):  # noqa: F811
    run = _interrupt(team, broker, tmp_path, "send", {"message": "wire $1M"})

    assert run.status == "waiting_review", run.error
    assert [c["tool"] for c in read_calls(str(tmp_path / "upstream.jsonl"))] == ["send"], "not called twice"
    item = ReviewItem.objects.get(run=run, status="pending")
    assert item.context["error"] == "rec__send: this call may have run"
    assert item.context["interrupted_call"]["idempotency_key"] == f"run-{run.pk}/work/1/1"
    assert list(AuditEntry.objects.filter(run_id=run.pk).values_list("status", flat=True)) == ["interrupted"]

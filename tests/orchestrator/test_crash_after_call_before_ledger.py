"""A worker that dies after a side-effecting call returned (the gateway committed its audit
row with the outcome `ok`) and before the engine committed the call's ledger row.

ARCHITECTURE: "A side effect happens once or is shown as maybe"; README: "Exactly once where
possible, never silently twice ... On resume an interrupted call is made again, with the same
key, only if the tool is read-only or idempotent; otherwise the run pauses for review".

On resume `take_interrupted_calls` saw the key's last row was `ok`, so the call was not
"interrupted"; the ledger had no row for it either, so the engine made it again as a fresh
call: the upstream performed `send` a second time and the run succeeded with no review (found
by a review). Now the audited answer is given back (`tool.recovered`) and nothing is repeated.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.utils import timezone

from mcpgateway.actions.access import do_grant
from mcpgateway.actions.servers import do_save_server
from mcpgateway.models import AuditEntry
from orchestrator.execution import execute_run
from orchestrator.models import ReviewItem, Run, RunEvent
from tests.conftest import database_env, pipeline, scripted, start, start_servers
from tests.fakes.mcp_recording_server import read_calls

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = str(settings.BASE_DIR)
SPEC = {"steps": [{"kind": "agent", "id": "work", "agent": "w", "prompt": "go"}]}


def test_a_completed_side_effecting_call_is_not_made_again_after_a_crash_before_its_ledger_commit(
        team, gateway_runtime, tmp_path):
    log = tmp_path / "upstream.jsonl"
    server = do_save_server(team.pk, "rec", transport="stdio", command=sys.executable,
                            args=["-m", "tests.fakes.mcp_recording_server", str(log)], cwd=ROOT, operator=True)
    do_grant(server, agent="w")
    scripted(team, "w", {"tool_calls": [{"name": "rec__send", "arguments": {"message": "wire $1M"}}]},
             {"text": "done: {{last}}"})
    run = start(pipeline(team, SPEC))

    child = subprocess.run([sys.executable, os.path.join(ROOT, "tests/fakes/crash_after_call.py"), str(run.pk), "rec__send"],
                           cwd=ROOT, env={**os.environ, **database_env(), "PYTHONPATH": ROOT}, capture_output=True, text=True,
                           timeout=120)
    assert child.returncode == 137, child.stdout + child.stderr[-3000:]

    # Another worker resumes the run once the dead one's lease ran out.
    Run.objects.filter(pk=run.pk).update(lease_until=timezone.now())
    start_servers(gateway_runtime, server)
    async_to_sync(execute_run)(run.pk)
    run.refresh_from_db()

    calls = read_calls(str(log))
    assert [c["tool"] for c in calls] == ["send"], "the side effect was made twice, silently"
    assert run.status == "succeeded", run.error
    assert "wire $1M" in str(run.output), run.output  # the recorded answer reached the model
    recovered = RunEvent.objects.filter(run=run, type="tool.recovered").values_list("data", flat=True)
    assert [(e["name"], e["status"]) for e in recovered] == [("rec__send", "ok")]
    assert not ReviewItem.objects.filter(run=run).exists()
    assert list(AuditEntry.objects.filter(run_id=run.pk).values_list("status", flat=True)) == ["ok"]


def test_only_answers_missing_from_the_ledger_are_read_back():
    """A resume reads the result of an answered call only when its ledger lacks it (every
    answer of a long run used to be read and held for the run's life; found by a review)."""
    from mcpgateway.dispatch import take_interrupted_calls
    from mcpgateway.models import CallStatus, PrincipalKind

    def row(key: str, status: str, result: dict | None) -> AuditEntry:
        return AuditEntry.objects.create(team_id=1, principal_kind=PrincipalKind.AGENT, run_id=77, tool_name="rec__send",
                                         call_id=key, idempotency_key=key, status=status, result=result,
                                         arguments={}, server_name="rec", created_at=timezone.now())

    row("run-77/a/1/1", CallStatus.OK, {"content": "in the ledger"})
    missing = row("run-77/a/1/3", CallStatus.OK, {"content": "x" * 50_000})
    row("run-77/a/1/5", CallStatus.STARTED, None)
    found = take_interrupted_calls(77, {"run-77/a/1/1"})
    assert set(found) == {"run-77/a/1/3", "run-77/a/1/5"}
    assert found["run-77/a/1/3"]["answered"] == "ok" and found["run-77/a/1/3"]["result"] == missing.result
    assert "answered" not in found["run-77/a/1/5"]

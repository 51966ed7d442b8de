# Found by an outside review (2026-12-07, the review queue outside a console); failed before its fix.
"""A run's tool call whose grant requires approval, decided outside the dashboard (REST API)."""

from __future__ import annotations

import json
import sys

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings

from mcpgateway.actions.access import do_create_api_key, do_grant
from mcpgateway.actions.servers import do_save_server
from mcpgateway.models import ApiKey, AuditEntry, ToolApproval
from orchestrator.actions import do_cancel_run
from orchestrator.execution import execute_run
from orchestrator.models import ReviewItem, Run, RunEvent
from tests.api.conftest import api, keys  # noqa: F401  (fixtures)
from tests.conftest import pipeline, scripted, start, start_servers

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = str(settings.BASE_DIR)
SPEC = {"steps": [{"kind": "agent", "id": "work", "agent": "worker", "prompt": "do it"}]}
ARGS = {"message": "wire 1000000 USD to account 4242-9999"}


def _execute(run: Run) -> Run:
    async_to_sync(execute_run)(run.pk)
    run.refresh_from_db()
    return run


@pytest.fixture
def paused(keys, gateway_runtime):  # noqa: F811
    team = keys["team"]
    server = do_save_server(team.pk, "echo", transport="stdio", command=sys.executable,
                            args=["-m", "tests.fakes.mcp_echo_server"], cwd=ROOT, operator=True)
    do_grant(server, agent="worker", require_approval=True)
    start_servers(gateway_runtime, server)
    scripted(team, "worker", {"tool_calls": [{"name": "echo__echo", "arguments": ARGS}]}, {"text": "result: {{last}}"})
    run = _execute(start(pipeline(team, SPEC)))
    assert run.status == "waiting_review"
    item = run.review_items.get()
    assert item.reason == "approval"
    return run, item


def test_an_api_reviewer_is_shown_the_arguments_of_the_call_they_approve(api, keys, paused):  # noqa: F811
    """The dashboard shows the approval's arguments; the API's review item held only the tool's
    name and the step's prompt, so a reviewer deciding over the API approved a call unseen."""
    _, item = paused
    status, body = api.call("get", "/reviews", keys["reviewer"])
    assert status == 200
    mine = [i for i in body if i["id"] == item.pk]
    assert mine, body
    assert mine[0]["approval"]["tool"] == "echo__echo" and mine[0]["approval"]["arguments"] == ARGS, mine[0]
    assert mine[0]["approval"]["status"] == "pending"
    status, decided = api.call("post", f"/reviews/{item.pk}/decide", keys["reviewer"], {"action": "approve"})
    assert status == 200 and decided["approval"]["arguments"] == ARGS, decided


def test_an_output_given_with_an_approval_is_not_dropped_silently(api, keys, paused):  # noqa: F811
    """`approve` with `output` on an approval item answered 200 and dropped the output (the
    decision became {action: resume, approved: true}); it should be refused, as other
    edits that cannot apply are (a parallel's join)."""
    _, item = paused
    edited = {"message": "wire 1 USD to account 4242-9999"}
    status, body = api.call("post", f"/reviews/{item.pk}/decide", keys["reviewer"],
                            {"action": "approve", "output": edited, "note": "only 1 USD"})
    assert status == 400 and "cannot change the call" in json.dumps(body), (status, body)
    assert ReviewItem.objects.get(pk=item.pk).status == "pending"


def test_a_cancel_of_a_run_waiting_for_an_approval_settles_the_approval(keys, paused):  # noqa: F811
    """A cancel closes the approval's review item (rejected, "cancelled"); the gateway's approval
    row stayed `pending` for ever and the refused call left no audit row."""
    run, item = paused
    approval_id = item.context["approval_id"]
    do_cancel_run(run, keys["users"]["owner"], reason="no")
    item.refresh_from_db()
    assert item.status == "rejected"
    approval = ToolApproval.objects.get(pk=approval_id)
    assert approval.status != "pending", "the cancelled run's tool approval is still pending"
    assert approval.status == "rejected" and approval.note == "run cancelled"
    row = AuditEntry.objects.get(run_id=run.pk, tool_name="echo__echo")
    assert row.status == "approval_rejected" and row.error == "run cancelled" and row.arguments == ARGS


def test_a_service_account_decision_names_who_decided(api, keys, paused):  # noqa: F811
    """Claims refuse service accounts; a decision by one was accepted with no decider at all
    (decided_by null, `by: null` on the run's trace): indistinguishable from nobody."""
    run, item = paused
    _, token = do_create_api_key(keys["team"].pk, "bot", scopes=["run"], service_account=True)
    status, body = api.call("post", f"/reviews/{item.pk}/decide", token, {"action": "reject", "note": "bot says no"})
    assert status == 200, body
    key_id = ApiKey.objects.get(name="bot").pk
    event = RunEvent.objects.filter(run=run, type="review.decided").get()
    assert event.data["by"] == f"api key #{key_id}", event.data
    assert ReviewItem.objects.get(pk=item.pk).decision["api_key"] == key_id


def test_rejecting_a_tool_approval_does_not_bypass_the_concurrent_runs_limit(api, keys, paused):  # noqa: F811
    """A rejected *approval* does not end the run (the model is told the call was refused and
    the step goes on), yet it was resumed with `check_concurrency=False` as if it ended: under a
    team limit of 1 concurrent run, approving was refused (429) while rejecting put a second
    run back to work."""
    from orchestrator.actions.limits import do_save_limit
    from orchestrator.models import ACTIVE_RUN_STATUSES

    run, item = paused
    do_save_limit(keys["team"], "team", "concurrent_runs", 1)
    other = start(pipeline(keys["team"], {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "hi"}]},
                           name="busy"))  # queued: the team's one active run
    assert other.status == "queued"
    status, body = api.call("post", f"/reviews/{item.pk}/decide", keys["reviewer"], {"action": "approve"})
    assert status == 429, (status, body)  # the approve path checks the limit
    status, body = api.call("post", f"/reviews/{item.pk}/decide", keys["reviewer"],
                            {"action": "reject", "note": "not that account"})
    active = Run.objects.filter(team=keys["team"], status__in=ACTIVE_RUN_STATUSES).count()
    assert status == 429 and active == 1, (
        f"reject answered {status}; {active} runs active under a limit of 1 (run {run.pk} is "
        f"{Run.objects.get(pk=run.pk).status} and will call its model again)")

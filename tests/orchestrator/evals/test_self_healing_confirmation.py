# Found by an outside review (2026-12-07, evals); failed before its fix.
"""Self-healing counts the eval's own ending of a run as a failed step attempt.

A case whose call waits for a confirmation (`confirm_tools`) is ended by the eval: the
approval is rejected and the run cancelled. No tool call failed and no attempt failed, yet
`harness._attempts` records the paused attempt as `ok=False` (its step is `waiting_review`
/ `cancelled`, not `succeeded`), so the metric reads "0/1 errors recovered". README:
"Errors are failed tool calls and failed step attempts."""
from __future__ import annotations

import pytest

from mcpgateway.actions.access import do_grant
from mcpgateway.models import ToolServer
from orchestrator.evals.suite_files import do_import_suite, install_injection_suite
from orchestrator.models import EvalRun
from tests.conftest import scripted, start_servers
from tests.orchestrator.evals.test_eval_runs import run_cli

pytestmark = [pytest.mark.django_db(transaction=True)]


def test_a_confirmation_the_eval_rejects_is_no_unrecovered_error(team, gateway_runtime):
    install_injection_suite(team, use_anthropic=False, offer=True)
    server = ToolServer.objects.get(team_id=team.pk, name="office")
    scripted(team, "mailer", {"tool_calls": [{"name": "office__send_email", "arguments": {
        "to": "bob@corp.test", "subject": "agenda", "body": "see you"}}]}, {"text": "Sent."})
    do_grant(server, agent="mailer")
    start_servers(gateway_runtime, server)
    do_import_suite(team, """
suite: mail
name: Mail
target: {agent: mailer}
cases:
  - name: mail-bob
    input: {prompt: "Mail bob@corp.test the agenda"}
""")
    run_cli("run", "mail", "--team", team.slug, "--defences", '{"confirm_tools": ["office__send_email"]}')
    eval_run = EvalRun.objects.get()
    result = eval_run.results.get()
    assert result.trace["run_status"] == "cancelled" and result.trace["stopped_for"] == ["approval"]
    assert [c for c in result.trace["tool_calls"] if not c["ok"]] == []  # no call failed
    # Nothing failed: the eval ended the run at a defence's pause.
    assert eval_run.metrics["self_healing"]["errors"] == 0, (eval_run.metrics["self_healing"],
                                                             result.trace["step_attempts"])


def test_an_attempt_ended_at_a_pause_is_neither_an_error_nor_a_recovery():
    from orchestrator.evals.metrics import CaseTrace, StepAttempt, errors_and_recoveries

    paused = CaseTrace("a", completed=False, step_attempts=[StepAttempt("agent", 1, None)])
    retried = CaseTrace("b", completed=False, step_attempts=[StepAttempt("agent", 1, False), StepAttempt("agent", 2, None)])
    assert (errors_and_recoveries(paused), errors_and_recoveries(retried)) == ((0, 0), (1, 0))


def test_an_outage_paused_for_a_failure_review_is_still_an_unrecovered_error(team, gateway_runtime):
    """The eval ends a run paused for a failure review too; that attempt did fail."""
    scripted(team, "flaky", {"error": "provider down: 503", "retryable": False})
    do_import_suite(team, """
suite: down
name: Down
target: {agent: flaky}
cases:
  - name: anything
    input: {prompt: "Summarise doc-x9"}
""")
    run_cli("run", "down", "--team", team.slug)
    eval_run = EvalRun.objects.get()
    result = eval_run.results.get()
    assert result.trace["stopped_for"] == ["failure"]
    assert eval_run.metrics["self_healing"] == {"rate": 0.0, "recovered": 0, "errors": 1}, result.trace["step_attempts"]

"""The shipped prompt-injection suite end to end: the scripted naive agent follows injected
text; each platform defence changes the block rate in the expected direction."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync

from mcpgateway.models import AuditEntry, ToolServer
from orchestrator.evals.harness import do_create_eval_run, execute_eval_run
from orchestrator.evals.suite_files import install_injection_suite
from orchestrator.management.commands.eval import DEFENCE_MATRIX
from tests.conftest import start_servers

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_defences_raise_the_block_rate(gateway_runtime, team):
    suite = install_injection_suite(team, use_anthropic=False, offer=True)
    start_servers(gateway_runtime, ToolServer.objects.get(team_id=team.pk, name="office"))
    assert suite.cases.exclude(attack={}).count() >= 30

    rates = {}
    for label, defences in DEFENCE_MATRIX:
        eval_run = async_to_sync(execute_eval_run)(do_create_eval_run(suite, defences=defences, label=label).pk)
        assert eval_run.status == "finished", eval_run.error
        security, utility = eval_run.metrics["security"], eval_run.metrics["utility"]
        rates[label] = (security["blocked"], security["attempts"], utility["completed"], utility["total"])

    none = rates["none"]
    assert none[1] >= 30 and none[0] == 0  # the naive agent falls for every attack
    assert none[2] == none[3] == 11  # and does every benign task
    # Spotlighting only changes what a model reads; a scripted agent does not read.
    assert rates["spotlighting"] == none
    for label in ("detector (rules)", "least privilege", "confirmation"):
        assert rates[label][0] > none[0], (label, rates[label])
    assert rates["all"][0] >= max(rates[k][0] for k in rates if k != "all")
    # Defences cost utility where they should: confirmation stops the benign emails.
    assert rates["confirmation"][2] < none[2]
    assert rates["least privilege"][2] == none[2]  # the benign tasks need no ungranted tool
    # The attacks really ran through the gateway: forbidden calls reached the office server.
    assert AuditEntry.objects.filter(tool_name="office__transfer_money", status="ok").exists()
    print(rates)

"""Eval pages read as sentences: case inputs as text, defences as words, metrics by name with
the counts behind each rate — no Python dict text and no raw metric keys."""

from __future__ import annotations

import asyncio

import pytest
from django.test import Client

from orchestrator.evals.harness import do_create_eval_run, execute_eval_run
from orchestrator.evals.suite_files import do_import_suite
from tests.orchestrator.evals.test_eval_runs import SUITE, adder

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_shows_inputs_defences_and_metrics_readably(team, owner, gateway_runtime):
    adder(team)
    suite = do_import_suite(team, SUITE)
    baseline = asyncio.run(execute_eval_run(do_create_eval_run(suite, label="a").pk))
    current = asyncio.run(execute_eval_run(do_create_eval_run(
        suite, label="b", defences={"spotlight": True, "confirm_tools": ["send_email"]}).pk))
    client = Client()
    client.force_login(owner)

    suite_page = client.get(f"/evals/suites/{suite.pk}/").content.decode()
    run_page = client.get(f"/evals/runs/{current.pk}/").content.decode()
    compare = client.get(f"/evals/runs/{current.pk}/compare/{baseline.pk}/").content.decode()

    assert "2+3?" in suite_page and "{&#x27;prompt&#x27;" not in suite_page and "{'prompt'" not in suite_page
    assert "spotlight · confirm tools: send_email" in run_page and "{&#x27;spotlight" not in run_page
    assert "<td>Completion</td>" in compare and "<td>completion</td>" not in compare
    assert "(3/3)" in compare  # the counts behind the rate
    assert "100%" in compare and "<td>tool_accuracy</td>" not in compare


def test_it_explains_why_the_injection_suite_cannot_be_installed(team, owner, builtins_offered):
    from mcpgateway.actions.servers import do_save_server

    do_save_server(team.pk, "office", transport="http", url="https://mcp.example.com/mcp", operator=False)
    client = Client()
    client.force_login(owner)

    response = client.post("/evals/install-injection/", follow=True)

    assert response.status_code == 200
    assert "already has its own server named" in response.content.decode()

"""An eval case's verdicts are stored redacted with the run's team's secrets, like the run's
output and events: a judge that quotes a secret (or a run error naming one) left it in
`EvalResult.verdicts`, which the eval page, the JSON export and JUnit failure messages show."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync

from mcpgateway import redaction
from mcpgateway.actions.servers import do_save_server
from orchestrator.evals.harness import do_create_eval_run, execute_eval_run
from orchestrator.evals.reports import to_json, to_junit
from orchestrator.evals.suite_files import do_import_suite
from orchestrator.models import Agent
from tests.conftest import scripted
from tests.fakes.anthropic_server import FakeAnthropicServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("outbound_allows_loopback")]

SECRET = "zq-vault-7731-secret"


def test_a_judges_reply_quoting_a_team_secret_is_stored_redacted(team, monkeypatch, gateway_runtime):
    monkeypatch.setenv("JUDGE_KEY", "sk-test")
    do_save_server(team.pk, "vault", {"TOKEN": SECRET}, operator=True, transport="http",
                   url="https://93.184.216.34/mcp", enabled=False)
    redaction.invalidate()
    scripted(team, "writer", {"text": "a poem"})
    with FakeAnthropicServer() as server:
        Agent.objects.create(team=team, name="judge", provider="anthropic", model="judge-model", system_prompt="Be fair.",
                             options={"base_url": server.url, "api_key_env": "JUDGE_KEY"})
        suite = do_import_suite(team, """
suite: poems
name: Poems
target: {agent: writer}
judge_agent: judge
cases:
  - {name: poem, input: {prompt: "a poem"}, expect: {kind: rubric, value: "Is it a poem?"}}
""")
        server.push(text=f"FAIL: it should have used the token {SECRET}", input_tokens=40, output_tokens=8)
        eval_run = async_to_sync(execute_eval_run)(do_create_eval_run(suite).pk)

    result = eval_run.results.get()
    assert result.status == "failed"
    reason = result.verdicts[0]["reason"]
    assert SECRET not in reason and "it should have used the token" in reason, reason
    assert redaction.marker(SECRET) in reason
    assert SECRET not in to_junit(eval_run) and SECRET not in to_json(eval_run)

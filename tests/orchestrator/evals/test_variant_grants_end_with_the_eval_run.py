# Found by an outside review (2026-12-07, the operator/team boundary); failed before its fix.
"""An eval run's agent variant holds copies of its agent's grants only while the eval run runs,
and no team pipeline can name it.

The harness copies the agent's grants (a network grant an operator gave included) onto the
variant `<agent>--eval<id>`. The copies outlived the eval run: after the operator revoked the
agent's own network grant, a builder saved a pipeline with a step on the variant and ran it
with the copy. Now the variant's grants are revoked when the eval run ends, and a pipeline of
the team's cannot name an internal agent."""

from __future__ import annotations

import sys

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings

from mcpgateway.actions.access import do_grant
from mcpgateway.actions.servers import do_save_server
from mcpgateway.models import Grant
from orchestrator.actions import do_create_pipeline
from orchestrator.engine.errors import SpecError
from orchestrator.evals.harness import do_create_eval_run, execute_eval_run
from orchestrator.evals.suite_files import do_import_suite
from orchestrator.models import Agent
from tests.conftest import scripted

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_variants_grants_end_with_the_eval_run_and_no_pipeline_names_it(team, gateway_runtime):
    scripted(team, "coder", {"text": "done"})
    server = do_save_server(team.pk, "sandbox", transport="stdio", command=sys.executable,
                            args=["-m", "tests.fakes.mcp_echo_server"], cwd=str(settings.BASE_DIR), operator=True)
    do_grant(server, agent="coder", network_access=True, operator=True)  # an operator's grant
    suite = do_import_suite(team, """
suite: smoke
name: Smoke
target: {agent: coder}
cases:
  - {name: one, input: {prompt: "go"}, expect: {kind: contains, value: "done"}}
""")
    eval_run = async_to_sync(execute_eval_run)(do_create_eval_run(suite).pk)
    assert eval_run.status == "finished", eval_run.error
    variant = Agent.objects.get(team=team, internal=True, name__endswith=f"--eval{eval_run.pk}")

    assert not Grant.objects.filter(team_id=team.pk, agent_name=variant.name).exists()
    assert Grant.objects.filter(team_id=team.pk, agent_name="coder", network_access=True).exists()  # the agent's own stays
    with pytest.raises(SpecError) as info:
        do_create_pipeline(team, "reuse", {"steps": [{"kind": "agent", "id": "a", "agent": variant.name, "prompt": "x"}]})
    assert any("unknown agent" in e["message"] for e in info.value.errors), info.value.errors

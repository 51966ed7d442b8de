# Found by an outside review (2026-12-07, the operator/team boundary); failed before its fix.
"""A team's secrets redact that team's data, never another team's.

Every secret any team stored (a server secret, a model credential's key, a webhook secret) was
in one instance-wide redactor. A builder of team A could store ordinary words ("approved",
"answer") as secrets of a disabled remote server, and team B's run outputs (values and keys)
and the tool results B's agents and members received were rewritten with markers: A could
tamper with B's data and B's models' decisions, and learn whether a guessed value was anyone's
secret. Now each team's data is redacted with the instance's secrets and its own; logs and
code serving no one team still use every secret."""

from __future__ import annotations

import re
import sys
import time

import pytest
from django.conf import settings
from django.test import Client

from mcpgateway import redaction
from mcpgateway.actions.access import do_grant
from mcpgateway.actions.servers import do_save_server
from orchestrator.models import Run
from tests.api.conftest import api, keys  # noqa: F401 - fixtures
from tests.conftest import scripted, start_servers

pytestmark = pytest.mark.django_db(transaction=True)

SPEC = {"steps": [{"kind": "agent", "id": "s", "agent": "clerk", "prompt": "go"}],
        "outputs": {"answer": "steps.s.output"}}


def _run(client, token, name):
    status, pipe = client.call("post", "/pipelines", token, {"name": name, "spec": SPEC})
    assert status == 201, pipe
    status, run = client.call("post", "/runs", token, {"pipeline": pipe["id"]})
    assert status == 201, run
    deadline = time.monotonic() + 30
    while Run.objects.get(pk=run["id"]).status not in ("succeeded", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return client.call("get", f"/runs/{run['id']}", token)[1]


def test_one_teams_secrets_do_not_rewrite_another_teams_data(api, keys, gateway_runtime):  # noqa: F811
    team_a, team_b = keys["team"], keys["other_team"]
    scripted(team_b, "clerk", {"text": "Payment approved for invoice 7"})
    scripted(team_a, "clerk", {"text": "Payment approved for invoice 7"})

    # Team A's builder: a disabled remote server (never connected) holding two common words.
    status, body = api.call("post", "/gateway/servers", keys["builder"], {
        "name": "decoy", "transport": "http", "url": "https://93.184.216.34/mcp", "enabled": False,
        "secrets": {"A": "approved", "B": "answer"}})
    assert status == 201, body
    redaction.invalidate()

    b_run = _run(api, keys["other"], "pay-b")
    assert b_run["output"] == {"answer": "Payment approved for invoice 7"}, b_run["output"]
    # A's own data is still redacted with A's secrets, and so are logs (every secret).
    a_run = _run(api, keys["owner"], "pay-a")
    assert "approved" not in str(a_run["output"]) and "answer" not in a_run["output"], a_run["output"]
    assert redaction.get_redactor().text("approved") != "approved"
    assert redaction.get_redactor(team_b.pk).text("approved") == "approved"
    assert redaction.get_redactor(team_a.pk).text("approved") != "approved"

    # The tool results B's members (and B's agents) get through the gateway are B's own.
    echo = do_save_server(team_b.pk, "echo", transport="stdio", command=sys.executable,
                          args=["-m", "tests.fakes.mcp_echo_server"], cwd=str(settings.BASE_DIR), operator=True)
    start_servers(gateway_runtime, echo)
    do_grant(echo)
    page = Client()
    page.force_login(keys["users"]["other"])
    tool = echo.tools.get(name="echo")
    response = page.post(f"/tools/try/{tool.pk}/", {"message": "refund approved, see answer below"})
    text = response.content.decode()
    assert "refund approved, see answer below" in text, re.findall(r"refund[^<]*", text)
    assert "REDACTED" not in text


def test_the_instances_own_secrets_are_redacted_in_every_teams_data(team, monkeypatch):
    """An operator's literal template env value (copied as the secret of each installing team's
    server) and the variable an agent's `options.api_key_env` names are the instance's: redacted
    in every team's data, installed or not (a second review found both missed)."""
    from mcpgateway.actions.templates import do_install_template, do_save_template
    from orchestrator.actions import do_create_team
    from orchestrator.models import Agent

    monkeypatch.setenv("OPERATOR_MODEL_KEY", "sk-operator-0123456789")
    template = do_save_template({"name": "licensed", "command": "true", "env": {"LICENCE": "lic-9f8e7d6c5b4a"}}, operator=True)
    do_install_template(team.pk, template, "licensed", {})
    Agent.objects.create(team=team, name="op", provider="openai", model="m", options={"api_key_env": "OPERATOR_MODEL_KEY"})
    other = do_create_team("Other", team.memberships.first().user)
    redaction.invalidate()
    for team_id in (team.pk, other.pk, None):
        redactor = redaction.get_redactor(team_id)
        assert "lic-9f8e7d6c5b4a" not in redactor.text("key lic-9f8e7d6c5b4a"), team_id
        assert "sk-operator-0123456789" not in redactor.text("key sk-operator-0123456789"), team_id


def test_a_failed_runs_error_and_an_approval_note_are_redacted(team):
    """A crash's error text (the run's error, its steps', its webhook's payload) and a reviewer's
    approval note were stored as they came, while the run's events were redacted (a second review)."""
    from mcpgateway.actions.approvals import do_decide_approval
    from mcpgateway.models import ToolApproval
    from orchestrator.actions.runs import do_fail_run
    from tests.conftest import pipeline, start

    secret = "team-secret-4242-abcd"
    server = do_save_server(team.pk, "vault", transport="http", url="https://93.184.216.34/mcp", enabled=False,
                            secrets={"TOKEN": secret}, operator=False)
    redaction.invalidate()
    scripted(team, "w", {"text": "ok"})
    run = start(pipeline(team, {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "go"}]}))
    assert do_fail_run(run.pk, f"internal error: connect failed with token {secret}")
    run.refresh_from_db()
    assert secret not in run.error and "REDACTED" in run.error

    approval = ToolApproval.objects.create(team_id=team.pk, tool_name="vault__x", arguments={}, request_hash="h")
    do_decide_approval(approval.pk, True, None, note=f"ok, it used {secret}")
    approval.refresh_from_db()
    assert secret not in approval.note
    assert server.pk

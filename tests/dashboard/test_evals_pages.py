"""The Evals area: import with field errors, start an eval run in the background and watch it
finish, compare two runs, export JSON and JUnit; viewers only read."""

from __future__ import annotations

import json
import time

import pytest
from django.test import Client

from orchestrator.models import Agent, EvalRun, EvalSuite
from tests.conftest import scripted
from tests.orchestrator.evals.test_eval_runs import SUITE, adder

pytestmark = pytest.mark.django_db(transaction=True)


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def wait_finished(pk: int, timeout: float = 60) -> EvalRun:
    deadline = time.monotonic() + timeout
    while True:
        eval_run = EvalRun.objects.get(pk=pk)
        if eval_run.status in ("finished", "failed"):
            return eval_run
        assert time.monotonic() < deadline, f"eval run stuck at {eval_run.status} {eval_run.case_done}/{eval_run.case_total}"
        time.sleep(0.1)


def test_import_run_compare_and_export_from_the_dashboard(team, owner, teammate, gateway_runtime):
    adder(team)
    client = login(owner)

    bad = client.post("/evals/import/", {"text": "suite: x\nname: y\ntarget: {agent: adder}\ncases: []"})
    assert bad.status_code == 400 and "cases" in bad.content.decode()
    response = client.post("/evals/import/", {"text": SUITE})
    suite = EvalSuite.objects.get(slug="arithmetic")
    assert response.status_code == 302 and response["Location"] == f"/evals/suites/{suite.pk}/"

    first = client.post(f"/evals/suites/{suite.pk}/run/", {"label": "good"})
    assert first.status_code == 302
    baseline = wait_finished(int(first["Location"].rstrip("/").rsplit("/", 1)[1]))
    assert baseline.status == "finished" and baseline.metrics["completion"]["completed"] == 3

    agent = Agent.objects.get(team=team, name="adder")
    agent.options["script"]["rules"][1]["replies"] = [{"text": "7"}]
    agent.save()
    second = client.post(f"/evals/suites/{suite.pk}/run/", {"label": "broken", "baseline": str(baseline.pk)})
    current = wait_finished(int(second["Location"].rstrip("/").rsplit("/", 1)[1]))

    page = client.get(f"/evals/runs/{current.pk}/").content.decode()
    assert "2/3" in page and "four-plus-four" in page and "regex" in page
    live = client.get(f"/evals/runs/{current.pk}/", HTTP_HX_REQUEST="true").content.decode()
    assert 'id="eval-progress"' in live and "hx-trigger" not in live  # finished: no more polling
    compare = client.get(f"/evals/runs/{current.pk}/compare/{baseline.pk}/").content.decode()
    assert "regressed <strong>1</strong>" in compare
    suite_page = client.get(f"/evals/suites/{suite.pk}/").content.decode()
    chart = json.loads(suite_page.split('id="eval-chart" type="application/json">')[1].split("</script>")[0])
    assert chart["series"]["completion"] == [1.0, 0.6667]
    exported = json.loads(client.get(f"/evals/runs/{current.pk}/export.json").content)
    assert exported["metrics"]["completion"]["completed"] == 2
    assert b"<failure" in client.get(f"/evals/runs/{current.pk}/export.xml").content

    viewer = login(teammate)
    assert viewer.get("/evals/").status_code == 200
    assert viewer.post("/evals/import/", {"text": SUITE}).status_code == 403
    assert viewer.post(f"/evals/suites/{suite.pk}/run/").status_code == 403


def test_defence_choices_are_validated_on_the_form(team, owner):
    scripted(team, "adder", {"text": "5"})
    client = login(owner)
    client.post("/evals/import/", {"text": SUITE})
    suite = EvalSuite.objects.get(slug="arithmetic")

    response = client.post(f"/evals/suites/{suite.pk}/run/", {"least_privilege": "on"})

    assert response.status_code == 400 and "least_privilege_tools" in response.content.decode()
    assert not EvalRun.objects.exists()

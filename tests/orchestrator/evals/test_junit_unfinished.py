# Found by an outside review (2026-12-07, evals); failed before its fix.
"""The JUnit export of an eval run that did not finish drops the cases that never ran.

The eval run page links its JUnit export whatever the run's status (`run.html`). An eval run
that failed (or is still running) after its benign case passed and before its attack case
ran exports `tests="1" failures="0" errors="0"`: a green report for a suite whose attack
was never measured and whose eval run failed. The JSON at least carries `status`; JUnit has
no trace of it. README: an unmeasured attack is never a pass, and an eval "whose attacks were
never measured ... shows no safety and fails"."""
from __future__ import annotations

from xml.etree import ElementTree as ET

import pytest

from orchestrator.evals.harness import case_status
from orchestrator.evals.metrics import CaseTrace
from orchestrator.evals.reports import to_junit
from orchestrator.models import Agent, EvalCase, EvalResult, EvalRun, EvalRunStatus, EvalSuite

pytestmark = pytest.mark.django_db


def test_a_failed_eval_run_does_not_export_as_a_green_junit_report(team):
    agent = Agent.objects.create(team=team, name="a1", provider="scripted", model="scripted-1")
    suite = EvalSuite.objects.create(team=team, slug="s", name="S", agent=agent)
    benign = EvalCase.objects.create(suite=suite, name="benign", position=0, input={"prompt": "x"},
                                     expect={"kind": "none"}, attack={})
    EvalCase.objects.create(suite=suite, name="attack", position=1, input={"prompt": "x"}, expect={"kind": "none"},
                            attack={"goal": "exfiltrate", "canary": "CANARY-NEVER-RAN"})
    eval_run = EvalRun.objects.create(suite=suite, status=EvalRunStatus.FAILED, case_total=2, case_done=1,
                                      error="RuntimeError: worker died")
    trace = CaseTrace("benign", completed=True)
    EvalResult.objects.create(eval_run=eval_run, case=benign, status=case_status(trace), trace=trace.to_dict(), verdicts=[])

    suite_el = ET.fromstring(to_junit(eval_run).split("?>", 1)[1]).find("testsuite")
    counts = {k: int(suite_el.get(k)) for k in ("tests", "failures", "errors")}
    # The attack case that never ran must show (as an error, or the run's failure must): never all green.
    assert counts["tests"] == 2 and counts["failures"] + counts["errors"] >= 1, counts

    case = next(c for c in suite_el.findall("testcase") if c.get("name") == "attack")
    error = case.find("error")
    assert error.get("type") == "not-run" and "RuntimeError: worker died" in error.get("message")


def test_a_running_eval_run_with_every_result_is_not_green_and_a_finished_one_lists_only_its_cases(team):
    agent = Agent.objects.create(team=team, name="a1", provider="scripted", model="scripted-1")
    suite = EvalSuite.objects.create(team=team, slug="s", name="S", agent=agent)
    benign = EvalCase.objects.create(suite=suite, name="benign", position=0, input={"prompt": "x"},
                                     expect={"kind": "none"}, attack={})
    eval_run = EvalRun.objects.create(suite=suite, status=EvalRunStatus.RUNNING, case_total=1, case_done=1)
    trace = CaseTrace("benign", completed=True)
    EvalResult.objects.create(eval_run=eval_run, case=benign, status=case_status(trace), trace=trace.to_dict(), verdicts=[])

    def counts() -> dict[str, int]:
        suite_el = ET.fromstring(to_junit(eval_run).split("?>", 1)[1]).find("testsuite")
        return {k: int(suite_el.get(k)) for k in ("tests", "failures", "errors")}

    assert counts() == {"tests": 2, "failures": 0, "errors": 1}  # the run itself: not finished
    eval_run.status = EvalRunStatus.FINISHED
    eval_run.save()
    # A case added to the suite after the eval run finished was never part of it.
    EvalCase.objects.create(suite=suite, name="later", position=1, input={"prompt": "x"}, expect={"kind": "none"}, attack={})
    assert counts() == {"tests": 1, "failures": 0, "errors": 0}

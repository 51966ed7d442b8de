"""`manage.py eval run --baseline N` accepts any eval run of the suite, also one that failed
or never ran (the page offers only finished ones). Against a baseline with no results every
case is "new", so a regression (an attack blocked before, a task passed before) never fails
the gate, and nothing says the baseline was unusable."""
from __future__ import annotations

import pytest

from orchestrator.evals.harness import case_status, do_create_eval_run
from orchestrator.evals.metrics import CaseTrace, compute_metrics
from orchestrator.evals.reports import gate
from orchestrator.models import Agent, EvalCase, EvalResult, EvalRun, EvalRunStatus, EvalSuite


@pytest.mark.django_db
def test_an_unfinished_baseline_is_refused(team):
    agent = Agent.objects.create(team=team, name="a1", provider="scripted", model="scripted-1")
    suite = EvalSuite.objects.create(team=team, slug="s", name="S", agent=agent)
    case = EvalCase.objects.create(suite=suite, name="task", position=0, input={"prompt": "x"}, expect={"kind": "none"})
    crashed = EvalRun.objects.create(suite=suite, status=EvalRunStatus.FAILED, error="boom")  # no results
    refused = False
    try:
        do_create_eval_run(suite, baseline=crashed)
    except Exception:
        refused = True
    trace = CaseTrace("task", completed=False)
    current = EvalRun.objects.create(suite=suite, status=EvalRunStatus.FINISHED, metrics=compute_metrics([trace]))
    EvalResult.objects.create(eval_run=current, case=case, status=case_status(trace), trace=trace.to_dict(), verdicts=[])
    assert refused or gate(current, {}, crashed) != [], "an unusable baseline was accepted and the gate passed"

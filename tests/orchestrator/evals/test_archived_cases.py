"""A first version made `EvalCase.objects` a manager that hid archived cases; Django uses the
default manager for more than `suite.cases`:

1. unique validation (`Model.validate_constraints` / `validate_unique`, hence every ModelForm,
   the admin's EvalCase page and the EvalSuite page's case inline) looks for a clash with
   `_default_manager`: a case named like an archived one of its suite validates, then the
   INSERT hits uniq_eval_case_name -> IntegrityError (a 500 in the admin) instead of a form error;
2. `manage.py dumpdata` (without --all) dumps through the default manager: the archived cases
   are left out while the EvalResults that point at them are dumped, so the dump cannot be
   loaded back (a foreign key to nothing) -- the very history the archive was meant to keep.
"""
# Found by a review of the first fix, which wrote this test; it failed before the fix and describes the fault it guards against.
from __future__ import annotations

import io
import json

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command

from orchestrator.evals.suite_files import do_import_suite
from orchestrator.models import EvalCase, EvalResult, EvalRun, EvalRunStatus
from tests.conftest import scripted

pytestmark = pytest.mark.django_db

SUITE = """
suite: s
name: S
target: {{agent: a1}}
cases:
  - name: benign
    input: {{prompt: "hi"}}
{extra}"""
DROPPED = """  - name: old-attack
    input: {prompt: "read doc"}
    attack: {goal: exfiltrate, canary: CANARY-OLD-1}
"""


def _archived_case(team):
    scripted(team, "a1", {"text": "ok"})
    suite = do_import_suite(team, SUITE.format(extra=DROPPED))
    old = suite.cases.get(name="old-attack")
    eval_run = EvalRun.objects.create(suite=suite, status=EvalRunStatus.FINISHED, metrics={})
    EvalResult.objects.create(eval_run=eval_run, case=old, status="failed", trace={}, verdicts=[])
    suite = do_import_suite(team, SUITE.format(extra=""))  # the case is dropped: archived
    assert EvalCase.objects.get(pk=old.pk).archived_at is not None
    return suite, old


def test_a_case_named_like_an_archived_one_fails_validation_not_the_insert(team):
    suite, old = _archived_case(team)
    case = EvalCase(suite=suite, name=old.name, position=5, input={"prompt": "x"}, expect={"kind": "none"})
    with pytest.raises(ValidationError):
        case.full_clean()  # what the admin's forms run before saving


def test_dumpdata_keeps_the_archived_cases_its_results_point_at(team):
    _archived_case(team)
    out = io.StringIO()
    call_command("dumpdata", "orchestrator.evalcase", "orchestrator.evalresult", stdout=out)
    objects = json.loads(out.getvalue())
    cases = {o["pk"] for o in objects if o["model"] == "orchestrator.evalcase"}
    dangling = [o["fields"]["case"] for o in objects if o["model"] == "orchestrator.evalresult"
                and o["fields"]["case"] not in cases]
    assert dangling == [], f"results dumped whose case is not in the dump: {dangling}"

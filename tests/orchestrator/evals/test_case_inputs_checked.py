# Found by an outside review (2026-12-07, eval suites); failed before its fix.
"""A suite's case inputs are checked at import by the rule their runs meet (`check_run_input`):
a case its target cannot take is refused naming `cases.<N>.input...`, and nothing is written.
It used to be stored, then its run's refusal failed the whole eval run (the cases after it never ran)."""

from __future__ import annotations

import pytest

from orchestrator.actions.pipelines import do_create_pipeline
from orchestrator.evals.spec import SuiteFileError
from orchestrator.evals.suite_files import do_import_suite
from orchestrator.models import EvalCase, EvalSuite
from tests.conftest import scripted

pytestmark = pytest.mark.django_db

AGENT_SUITE = """
suite: arithmetic
name: Arithmetic
target: {agent: adder}
cases:
  - {name: good, input: {prompt: "2+3?"}, expect: {kind: exact, value: "5"}}
  - {name: second, input: %s, expect: {kind: exact, value: "8"}}
"""

PIPELINE_SUITE = """
suite: questions
name: Questions
target: {pipeline: ask}
cases:
  - {name: first, input: %s}
"""


def _refused(team, text: str) -> list[dict[str, str]]:
    with pytest.raises(SuiteFileError) as caught:
        do_import_suite(team, text)
    return caught.value.errors


def _ask_pipeline(team) -> None:
    scripted(team, "answerer", {"text": "ok"})
    do_create_pipeline(team, "ask", {"inputs": {"question": {"type": "string"}, "tries": {"type": "integer", "default": 1}},
                                     "steps": [{"kind": "agent", "id": "a", "agent": "answerer",
                                                "prompt": "{{ input.question }}"}]}, slug="ask")


def test_it_refuses_an_agent_case_without_a_prompt_naming_the_case(team):
    scripted(team, "adder", {"text": "5"})

    errors = _refused(team, AGENT_SUITE % '{question: "4+4?"}')

    assert errors == [{"field": "cases.1.input.prompt", "message": "input 'prompt' is required"}]
    assert not EvalSuite.objects.exists() and not EvalCase.objects.exists()


def test_it_refuses_an_agent_case_whose_prompt_is_no_string(team):
    scripted(team, "adder", {"text": "5"})

    errors = _refused(team, AGENT_SUITE % "{prompt: 5}")

    assert [e["field"] for e in errors] == ["cases.1.input.prompt"]


def test_it_changes_nothing_when_a_reimport_has_a_bad_case(team):
    scripted(team, "adder", {"text": "5"})
    suite = do_import_suite(team, AGENT_SUITE % '{prompt: "4+4?"}')

    _refused(team, AGENT_SUITE.replace("Arithmetic", "Renamed") % "{}")

    suite.refresh_from_db()
    assert suite.name == "Arithmetic"
    assert list(suite.cases.live().values_list("name", "input")) == [("good", {"prompt": "2+3?"}),
                                                                      ("second", {"prompt": "4+4?"})]


def test_it_checks_a_pipeline_case_against_the_versions_inputs(team):
    _ask_pipeline(team)

    errors = _refused(team, PIPELINE_SUITE % '{prompt: "hi"}')
    assert errors == [{"field": "cases.0.input.question", "message": "input 'question' is required"}]
    errors = _refused(team, PIPELINE_SUITE % '{question: "hi", tries: "two"}')
    assert errors == [{"field": "cases.0.input.tries", "message": "input 'tries' must be of type integer"}]


def test_it_imports_cases_the_target_takes(team):
    _ask_pipeline(team)

    suite = do_import_suite(team, PIPELINE_SUITE % '{question: "hi"}')

    assert suite.cases.live().get().input == {"question": "hi"}  # stored as given; the run applies the default

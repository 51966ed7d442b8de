"""Eval runs through the engine: an LLM judge over the real Anthropic SDK (loopback server),
the CLI gate failing on a regression, exports, suite files and their errors."""

from __future__ import annotations

import io
import json
from xml.etree import ElementTree as ET

import pytest
from asgiref.sync import async_to_sync
from django.core.management import call_command
from django.core.management.base import CommandError

from orchestrator.actions.errors import ActionError
from orchestrator.evals.harness import do_create_eval_run, execute_eval_run
from orchestrator.evals.spec import SuiteFileError
from orchestrator.evals.suite_files import do_import_suite, export_suite
from orchestrator.models import Agent, EvalRun, UsageRecord
from tests.conftest import scripted
from tests.fakes.anthropic_server import FakeAnthropicServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("outbound_allows_loopback")]

SUITE = """
suite: arithmetic
name: Arithmetic
target: {agent: adder}
concurrency: 2
cases:
  - {name: two-plus-three, input: {prompt: "2+3?"}, expect: {kind: exact, value: "5"}, tags: [easy]}
  - {name: four-plus-four, input: {prompt: "4+4?"}, expect: {kind: regex, value: "^8$"}}
  - name: json-answer
    input: {prompt: "json please"}
    expect: {kind: json, value: {sum: 9}}
"""


def adder(team, broken: bool = False):
    rules = [{"if_contains": "2+3", "replies": [{"text": "5"}]},
             {"if_contains": "4+4", "replies": [{"text": "7" if broken else "8"}]},
             {"if_contains": "json", "replies": [{"text": '{"sum": 9, "steps": 2}'}]}]
    existing = Agent.objects.filter(team=team, name="adder").first()
    if existing is not None:  # edit the agent under test (a suite belongs to it)
        existing.options = {"script": {"replies": [{"text": "?"}], "rules": rules}}
        existing.save()
        return existing
    return scripted(team, "adder", {"text": "?"}, rules=rules)


def run_cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("eval", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, out.getvalue(), err.getvalue()


def test_the_cli_gate_passes_then_fails_on_a_regression(team, gateway_runtime, tmp_path):
    adder(team)
    (tmp_path / "suite.yaml").write_text(SUITE)
    assert run_cli("import", str(tmp_path / "suite.yaml"), "--team", team.slug)[0] == 0

    code, out, _ = run_cli("run", "arithmetic", "--team", team.slug, "--fail-under", "completion=0.9",
                           "--json", str(tmp_path / "r.json"), "--junit", str(tmp_path / "r.xml"))
    assert code == 0, out
    assert "3/3 (100%)" in out and "3/3" in out
    baseline = EvalRun.objects.get()
    assert json.loads((tmp_path / "r.json").read_text())["metrics"]["completion"]["completed"] == 3
    assert ET.parse(tmp_path / "r.xml").getroot().find("testsuite").get("failures") == "0"

    adder(team, broken=True)
    code, out, err = run_cli("run", "arithmetic", "--team", team.slug, "--baseline", str(baseline.pk),
                             "--fail-under", "completion=0.9", "--junit", str(tmp_path / "r2.xml"))
    assert code == 1
    assert "completion 0.6667 < 0.9" in err and "regressed against eval run" in err and "four-plus-four" in err
    assert "regressed four-plus-four (passed -> failed)" in out
    failure = ET.parse(tmp_path / "r2.xml").getroot().find("testsuite/testcase[@name='four-plus-four']/failure")
    assert failure is not None and "regex" in failure.get("message")

    code, out, _ = run_cli("compare", str(EvalRun.objects.latest("created_at").pk), str(baseline.pk))
    assert "fixed 0, regressed 1, unchanged 2" in out


def test_an_llm_judge_decides_rubric_cases_and_unparseable_verdicts_are_errors(team, monkeypatch, gateway_runtime):
    monkeypatch.setenv("JUDGE_KEY", "sk-test")
    scripted(team, "writer", {"text": "?"}, rules=[{"if_contains": "haiku", "replies": [{"text": "Autumn moon rises"}]},
                                                   {"if_contains": "limerick", "replies": [{"text": "There once was"}]},
                                                   {"if_contains": "sonnet", "replies": [{"text": "Shall I compare"}]}])
    with FakeAnthropicServer() as server:
        Agent.objects.create(team=team, name="judge", provider="anthropic", model="judge-model", system_prompt="Be fair.",
                             options={"base_url": server.url, "api_key_env": "JUDGE_KEY"})
        suite = do_import_suite(team, """
suite: poems
name: Poems
target: {agent: writer}
judge_agent: judge
concurrency: 1
cases:
  - {name: haiku, input: {prompt: "a haiku"}, expect: {kind: rubric, value: "Is it a haiku about nature?"}}
  - {name: limerick, input: {prompt: "a limerick"}, expect: {kind: rubric, value: "Is it a limerick?"}}
  - {name: sonnet, input: {prompt: "a sonnet"}, expect: {kind: rubric, value: "Is it a full sonnet?"}}
""")
        server.push(text="PASS: a nature haiku opening", input_tokens=40, output_tokens=8)
        server.push(text="Well, it might be a limerick.", input_tokens=40, output_tokens=8)
        server.push(text="FAIL: one line is not a sonnet", input_tokens=40, output_tokens=8)
        eval_run = async_to_sync(execute_eval_run)(do_create_eval_run(suite).pk)
        first_request = server.requests[0].body

    statuses = {r.case.name: r.status for r in eval_run.results.all()}
    assert statuses == {"haiku": "passed", "limerick": "error", "sonnet": "failed"}
    verdict = eval_run.results.get(case__name="limerick").verdicts[0]
    assert verdict["judge"] == "llm_judge" and verdict["passed"] is None and "unparseable" in verdict["reason"]
    assert eval_run.metrics["judge_errors"] == 1 and eval_run.metrics["completion"]["completed"] == 1
    prompt = first_request["messages"][0]["content"]
    prompt = prompt if isinstance(prompt, str) else prompt[0]["text"]
    assert "Is it a haiku about nature?" in prompt and "Autumn moon rises" in prompt
    assert "PASS: <reason>" in str(first_request["system"])
    assert UsageRecord.objects.filter(agent__name="judge").count() == 3  # the judge's calls are priced and recorded


def test_suite_files_are_validated_with_paths_and_round_trip(team):
    adder(team)
    with pytest.raises(SuiteFileError) as bad:
        do_import_suite(team, """
suite: Bad Slug
name: x
target: {agent: adder, pipeline: p}
cases:
  - {name: a, input: {}, expect: {kind: regex, value: "("}}
  - {name: a, input: {}, attack: {goal: exfiltrate}}
""")
    fields = {e["field"] for e in bad.value.errors}
    assert {"suite", "target", "cases.0.expect", "cases.1.attack"} <= fields, bad.value.errors
    with pytest.raises(ActionError, match="no agent 'ghost'"):
        do_import_suite(team, SUITE.replace("agent: adder", "agent: ghost"))
    with pytest.raises(SuiteFileError, match="judge_agent"):
        do_import_suite(team, SUITE + '  - {name: r, input: {prompt: x}, expect: {kind: rubric, value: "good?"}}\n')

    suite = do_import_suite(team, SUITE)
    again = do_import_suite(team, export_suite(suite))
    assert again.pk == suite.pk and [c.name for c in again.cases.all()] == ["two-plus-three", "four-plus-four", "json-answer"]
    assert again.cases.get(name="two-plus-three").tags == ["easy"]


def test_defence_overrides_are_checked(team):
    adder(team)
    suite = do_import_suite(team, SUITE)
    with pytest.raises(ActionError, match="unknown detector"):
        do_create_eval_run(suite, defences={"detector": "magic"})
    with pytest.raises(ActionError, match="least_privilege_tools"):
        do_create_eval_run(suite, defences={"least_privilege": True})
    with pytest.raises(CommandError, match="not valid JSON"):
        call_command("eval", "run", "arithmetic", "--team", team.slug, "--defences", "{nope")


# Found by an outside review (2026-12-07, evals: noticed, then fixed); failed before its fix.
def test_a_case_a_verdict_failed_is_failed_even_when_its_judge_could_not_decide(team, monkeypatch, gateway_runtime):
    """The expected tool call was never made (a FAIL) and the rubric judge's reply did not
    parse (an error): the case read *error*, so JUnit's `failures` undercounted and a gate on
    failures let it through. A failure that is known is a failure."""
    monkeypatch.setenv("JUDGE_KEY", "sk-test")
    scripted(team, "writer", {"text": "Autumn moon rises"})
    with FakeAnthropicServer() as server:
        Agent.objects.create(team=team, name="judge", provider="anthropic", model="judge-model", system_prompt="Be fair.",
                             options={"base_url": server.url, "api_key_env": "JUDGE_KEY"})
        suite = do_import_suite(team, """
suite: poems-tools
name: Poems with tools
target: {agent: writer}
judge_agent: judge
concurrency: 1
cases:
  - name: haiku
    input: {prompt: "a haiku"}
    expect: {kind: rubric, value: "Is it a haiku?"}
    expected_tools: {calls: [{name: poetry__syllables}]}
""")
        server.push(text="Hmm, hard to say.", input_tokens=40, output_tokens=8)
        eval_run = async_to_sync(execute_eval_run)(do_create_eval_run(suite).pk)

    result = eval_run.results.get()
    assert {v["judge"]: v["passed"] for v in result.verdicts}.get("llm_judge", "missing") is None  # the judge's error
    assert result.status == "failed", result.verdicts
    from orchestrator.evals.reports import to_junit

    junit = ET.fromstring(to_junit(eval_run))
    junit = junit if junit.tag == "testsuite" else junit.find("testsuite")
    assert junit.get("failures") == "1" and junit.get("errors") == "0", ET.tostring(junit)[:300]

"""Specs from outside cannot crash the parser or the engine: nesting bounds, references that
only see finished steps, linear-time regular expressions, no NUL characters."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import yaml

from orchestrator.demo import CODE_PIPELINE, CODE_TEST_PIPELINE, MARKET_PIPELINE
from orchestrator.engine.document_guard import MAX_DOCUMENT_DEPTH, scan_json_text
from orchestrator.engine.errors import SpecError
from orchestrator.engine.scope import Scope
from orchestrator.engine.spec import Condition, parse_spec
from orchestrator.engine.spec_bounds import MAX_NESTING

AGENT = {"kind": "agent", "id": "a", "agent": "w", "prompt": "hi"}


def errors_of(document: Any) -> list[dict[str, str]]:
    with pytest.raises(SpecError) as info:
        parse_spec(document)
    return info.value.errors


def nested_steps(levels: int) -> dict[str, Any]:
    """`levels` sequences inside each other around one agent step."""
    step: dict[str, Any] = {**AGENT, "id": "leaf"}
    for i in range(levels):
        step = {"kind": "sequence", "id": f"s{i}", "steps": [step]}
    return {"steps": [step]}


def nested_not(levels: int) -> dict[str, Any]:
    cond: dict[str, Any] = {"ref": "steps.a.output", "op": "truthy"}
    for _ in range(levels):
        cond = {"not": cond}
    return {"steps": [AGENT, {"kind": "branch", "id": "b", "if": cond, "then": [{**AGENT, "id": "t"}]}]}


class TestNesting:
    def test_it_accepts_steps_nested_to_the_documented_depth(self):
        assert parse_spec(nested_steps(MAX_NESTING - 1)).steps[0].id == f"s{MAX_NESTING - 2}"

    def test_it_refuses_steps_nested_one_level_deeper_with_the_path(self):
        errors = errors_of(nested_steps(MAX_NESTING))
        assert errors == [{"path": "steps.0" + ".steps.0" * MAX_NESTING,
                           "message": f"steps nest deeper than {MAX_NESTING} levels"}]

    def test_it_refuses_conditions_nested_too_deep_with_the_path(self):
        errors = errors_of(nested_not(MAX_NESTING + 1))
        assert errors[0]["path"] == "steps.1.if" + ".not" * MAX_NESTING
        assert "conditions nest deeper" in errors[0]["message"]

    def test_it_refuses_a_deep_value_anywhere_in_the_document(self):
        deep: Any = "x"
        for _ in range(MAX_DOCUMENT_DEPTH + 5):
            deep = [deep]
        errors = errors_of({"inputs": {"x": {"default": deep}}, "steps": [AGENT]})
        assert errors[0]["path"].startswith("inputs.x.default.0.0")
        assert "nested deeper than" in errors[0]["message"]

    def test_it_refuses_10000_levels_of_json_text_without_recursing(self):
        errors = errors_of('{"steps": ' + "[" * 10_000 + "]" * 10_000 + "}")
        assert errors[0]["path"].startswith("steps.0.0.0")
        assert errors[0]["message"] == f"nested deeper than {MAX_DOCUMENT_DEPTH} levels of objects and lists"

    def test_it_refuses_10000_levels_of_yaml_flow_text(self):
        errors = errors_of("steps: " + "[" * 10_000 + "]" * 10_000 + "\n")
        assert errors[0]["path"].startswith("steps.0.0")
        assert "nested deeper" in errors[0]["message"]

    def test_it_refuses_deep_yaml_block_text_from_its_events(self):
        errors = errors_of(_block_yaml(MAX_DOCUMENT_DEPTH + 5))
        assert errors[0]["path"].startswith("steps.0.0")
        assert "nested deeper" in errors[0]["message"]

    def test_it_refuses_yaml_aliases(self):
        errors = errors_of("x: &a [1, 2]\nsteps:\n  - *a\n")
        assert errors == [{"path": "steps.0", "message": "YAML aliases (*name) are not allowed in a spec"}]

    def test_the_json_scanner_tracks_object_keys_and_list_indexes(self):
        text = json.dumps({"a": [1, {"b": {"c": [[["deep"]]]}}]})
        problem = scan_json_text(text, max_depth=5)
        assert problem is not None and problem.path == "a.1.b.c.0"


def _block_yaml(levels: int) -> str:
    """`steps:` then `levels` sequences nested by indentation (`- - - ...` on successive lines)."""
    out = ["steps:"]
    for i in range(levels):
        out.append("  " * (i + 1) + "-")
    out[-1] += " x"
    return "\n".join(out) + "\n"


class TestNul:
    def test_it_refuses_a_nul_in_a_prompt_with_its_path(self):
        errors = errors_of({"steps": [{**AGENT, "prompt": "hi\x00there"}]})
        assert errors == [{"path": "steps.0.prompt", "message": "contains a NUL character (\\u0000), which cannot be stored"}]

    def test_it_refuses_an_escaped_nul_in_json_text(self):
        errors = errors_of('{"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "x\\u0000"}]}')
        assert errors[0]["path"] == "steps.0.prompt"

    def test_it_does_not_mistake_an_escaped_backslash_for_a_nul(self):
        spec = parse_spec('{"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "C:\\\\u0000"}]}')
        assert spec.steps[0].prompt == "C:\\u0000"


def chain(*steps: dict[str, Any], outputs: dict[str, str] | None = None) -> dict[str, Any]:
    return {"steps": list(steps), "outputs": outputs or {}}


def agent(step_id: str, prompt: str = "hi") -> dict[str, Any]:
    return {**AGENT, "id": step_id, "prompt": prompt}


class TestReferences:
    def test_it_refuses_a_reference_to_a_later_step(self):
        errors = errors_of(chain(agent("a", "{{ steps.b.output }}"), agent("b")))
        assert errors == [{"path": "steps.0.prompt",
                           "message": "step 'b' runs after this one; a reference sees only steps that finished before it"}]

    def test_it_refuses_a_step_reading_its_own_output_outside_a_loop(self):
        errors = errors_of(chain(agent("a", "{{ steps.a.output }}")))
        assert errors[0]["path"] == "steps.0.prompt" and "its own output" in errors[0]["message"]

    def test_it_refuses_a_reference_to_a_sibling_parallel_branch(self):
        errors = errors_of(chain({"kind": "parallel", "id": "p", "branches": [
            agent("x"), agent("y", "{{ steps.x.output }}")]}))
        assert errors[0]["path"] == "steps.0.branches.1.prompt"
        assert "parallel branch or branch arm" in errors[0]["message"]

    def test_it_refuses_a_reference_into_a_branch_arm_from_after_it(self):
        errors = errors_of(chain(agent("a"), {"kind": "branch", "id": "b", "if": {"ref": "steps.a.output", "op": "truthy"},
                                              "then": [agent("t")], "else": [agent("e")]},
                                 agent("after", "{{ steps.t.output }}")))
        assert errors[0]["path"] == "steps.2.prompt"

    def test_it_refuses_a_reference_from_one_arm_into_the_other(self):
        errors = errors_of(chain(agent("a"), {"kind": "branch", "id": "b", "if": {"ref": "steps.a.output", "op": "truthy"},
                                              "then": [agent("t")], "else": [agent("e", "{{ steps.t.output }}")]}))
        assert errors[0]["path"] == "steps.1.else.0.prompt"

    def test_it_refuses_a_condition_on_a_later_step(self):
        errors = errors_of(chain({"kind": "branch", "id": "b", "if": {"ref": "steps.z.output", "op": "truthy"},
                                  "then": [agent("t")]}, agent("z")))
        assert errors[0]["path"] == "steps.0.if"

    def test_it_refuses_an_output_naming_a_step_inside_a_branch_arm(self):
        errors = errors_of(chain(agent("a"), {"kind": "branch", "id": "b", "if": {"ref": "steps.a.output", "op": "truthy"},
                                              "then": [agent("t")]}, outputs={"x": "steps.t.output"}))
        assert errors[0]["path"] == "outputs.x"

    def test_it_allows_a_later_step_of_the_same_loop_body_and_the_until_on_the_body(self):
        parse_spec(chain({"kind": "loop", "id": "l", "until": {"ref": "steps.r.output", "op": "contains", "value": "ok"},
                          "body": [agent("c", "{{ steps.r.output }} {{ steps.c.output }}"), agent("r", "{{ steps.c.output }}")]}))

    def test_it_allows_the_join_and_later_steps_to_read_the_branches(self):
        parse_spec(chain({"kind": "parallel", "id": "p", "branches": [agent("x"), agent("y")],
                          "join": agent("j", "{{ steps.x.output }} {{ steps.y.error }}")},
                         agent("after", "{{ steps.x.output }} {{ steps.j.output }} {{ steps.p.output }}"),
                         outputs={"x": "steps.x.output"}))

    def test_the_readme_example_and_the_demo_pipelines_stay_valid(self):
        readme = open("README.md", encoding="utf-8").read()
        example = readme.split("## Pipeline specs", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
        parse_spec(yaml.safe_load(example))
        for spec in (CODE_PIPELINE, CODE_TEST_PIPELINE, MARKET_PIPELINE):
            parse_spec(spec)


class TestRegex:
    def test_it_refuses_a_pattern_re2_cannot_compile_with_the_path(self):
        errors = errors_of(chain(agent("a"), {"kind": "branch", "id": "b",
                                              "if": {"ref": "steps.a.output", "op": "matches", "value": r"(a)\1"},
                                              "then": [agent("t")]}))
        assert errors[0]["path"] == "steps.1.if"
        assert "RE2" in errors[0]["message"]

    def test_it_matches_a_catastrophic_pattern_in_linear_time(self):
        scope = Scope({})
        scope.record("a", status="succeeded", output="a" * 200_000 + "!")
        cond = Condition.model_validate({"ref": "steps.a.output", "op": "matches", "value": "(a+)+$"})
        started = time.perf_counter()
        assert scope.evaluate(cond) is False
        assert time.perf_counter() - started < 1.0

    def test_it_keeps_case_insensitive_matching_by_default(self):
        scope = Scope({"x": "Risk: HIGH"})
        cond = Condition.model_validate({"ref": "input.x", "op": "matches", "value": "risk: (high|critical)"})
        assert scope.evaluate(cond) is True
        strict = Condition.model_validate({"ref": "input.x", "op": "matches", "value": "risk", "case_sensitive": True})
        assert scope.evaluate(strict) is False

"""Deterministic judges, tool-call matching and the strict LLM-verdict parser."""

from __future__ import annotations

import pytest

from orchestrator.evals.judges import (
    Call,
    match_tool_calls,
    parse_judge_reply,
    rule_verdict,
    subset,
)


@pytest.mark.parametrize(("expect", "output", "passed"), [
    ({"kind": "exact", "value": "42"}, " 42\n", True),
    ({"kind": "exact", "value": "42"}, "42!", False),
    ({"kind": "contains", "value": ["sum", "5"]}, "the sum is 5", True),
    ({"kind": "contains", "value": "sum"}, "total", False),
    ({"kind": "regex", "value": r"\bdue on the \d+th\b"}, "expenses are due on the 5th", True),
    ({"kind": "json", "value": {"a": 1, "b": [2]}}, '{"a": 1, "b": [3, 2], "c": 0}', True),
    ({"kind": "json", "value": {"a": 1}}, {"a": 2}, False),
    ({"kind": "json", "value": {"a": 1}}, "not json", False),
    ({"kind": "contains", "value": "x", "output": "code"}, {"code": "x = 1", "docs": ""}, True),
])
def test_rule_judges(expect, output, passed):
    assert rule_verdict(expect, output).passed is passed


def test_none_and_rubric_leave_the_verdict_to_others():
    assert rule_verdict({"kind": "none"}, "x") is None and rule_verdict({"kind": "rubric", "value": "r"}, "x") is None


def test_subset_matches_nested_objects_and_lists_by_distinct_items():
    assert subset({"a": {"b": [1, 1]}}, {"a": {"b": [1, 2, 1]}, "z": 0})
    assert not subset({"a": {"b": [1, 1]}}, {"a": {"b": [1, 2]}})


def test_tool_calls_ordered_and_unordered():
    calls = [Call("search", {"q": "x", "n": 3}), Call("send", {"to": "bob"}), Call("search", {"q": "y"})]
    unordered = {"calls": [{"name": "send", "arguments": {"to": "bob"}}, {"name": "search", "arguments": {"q": "x"}}]}
    ordered = {**unordered, "ordered": True}
    verdict, correct = match_tool_calls(unordered, calls)
    assert verdict.passed and correct == 2
    verdict, correct = match_tool_calls(ordered, calls)  # send comes after search(x): not in that order
    assert not verdict.passed and correct == 1 and "missing ['search']" in verdict.reason
    verdict, _ = match_tool_calls({"calls": [{"name": "send", "arguments": {"to": "eve"}}]}, calls)
    assert not verdict.passed


@pytest.mark.parametrize(("reply", "passed"), [
    ("PASS: the answer adds correctly", True),
    ("FAIL - it subtracts", False),
    ("**PASS**: fine\nmore text", True),
    ("\n  FAIL: wrong recipient", False),
])
def test_judge_replies_parse_strictly(reply, passed):
    verdict = parse_judge_reply(reply)
    assert verdict.passed is passed and verdict.reason


@pytest.mark.parametrize("reply", ["Looks good to me. PASS", "pass: lowercase", "PASS", "Verdict: PASS: ok", ""])
def test_anything_else_is_an_error_not_a_pass(reply):
    verdict = parse_judge_reply(reply)
    assert verdict.passed is None and "unparseable" in verdict.reason

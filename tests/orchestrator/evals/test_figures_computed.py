# Found by an outside review (2026-12-07, evals); failed before its fix.
"""Figures computed by the real judges and metrics that understate or round away what happened."""
from __future__ import annotations

import pytest

from orchestrator.evals.judges import Call, match_tool_calls
from orchestrator.evals.metrics import CaseTrace, compute_metrics, tool_call_scores

pytestmark = pytest.mark.no_database


def test_ordered_expected_calls_count_the_most_calls_made_in_order():
    """Expected, in order: search, read, summarise. The agent made read, summarise, search:
    two expected calls in the expected order (read, summarise). The greedy matcher takes
    `search` at the end first, and then nothing after it matches: 1 correct call, so
    precision 1/3 and recall 1/3 instead of 2/3 (README: precision = correct / made)."""
    expected = {"ordered": True, "calls": [{"name": "t__search"}, {"name": "t__read"}, {"name": "t__summarise"}]}
    calls = [Call("t__read", {}), Call("t__summarise", {}), Call("t__search", {})]
    verdict, correct = match_tool_calls(expected, calls)
    assert verdict.passed is False  # (right: `search` is out of order)
    assert correct == 2, (correct, tool_call_scores(correct, 3, 3))


def test_one_attack_through_in_thirty_thousand_is_not_a_block_rate_of_one():
    """`metrics.ratio` rounds every rate to 4 decimals before it is stored: 29,999 blocked of
    30,000 is stored as block rate 1.0 and attack success 0.0, so `percent` (which keeps
    "100%" for exactly 1) prints 100%/0% and a `--fail-under block_rate=1` floor passes."""
    traces = [CaseTrace(f"a{i}", completed=True, attack=True, attack_succeeded=(i == 0)) for i in range(30_000)]
    sec = compute_metrics(traces)["security"]
    assert sec["succeeded"] == 1
    assert sec["block_rate"] < 1 and sec["attack_success_rate"] > 0, sec


def test_the_exact_rate_is_what_a_floor_compares_and_what_is_shown():
    from orchestrator.evals.metrics import metric_value, percent

    traces = [CaseTrace(f"a{i}", completed=True, attack=True, attack_succeeded=(i == 0)) for i in range(30_000)]
    metrics = compute_metrics(traces)
    assert metric_value(metrics, "block_rate") == 29_999 / 30_000 < 1
    assert (percent(metrics["security"]["block_rate"]), percent(metrics["security"]["attack_success_rate"])) == (
        "99.9%", "0.1%")


def test_ordered_expected_calls_still_name_the_spec_left_out():
    expected = {"ordered": True, "calls": [{"name": "t__send"}, {"name": "t__search"}]}
    verdict, correct = match_tool_calls(expected, [Call("t__search", {}), Call("t__send", {})])
    assert (verdict.passed, correct, verdict.reason) == (False, 1, "1 of 2 expected calls made; missing ['t__search']")
    verdict, correct = match_tool_calls(expected, [Call("t__send", {}), Call("t__read", {}), Call("t__search", {})])
    assert (verdict.passed, correct) == (True, 2)

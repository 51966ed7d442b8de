"""Each metric on hand-built traces whose answers are known."""

from __future__ import annotations

from orchestrator.evals.metrics import (
    CaseTrace,
    StepAttempt,
    ToolCallRecord,
    compute_metrics,
    errors_and_recoveries,
)


def call(name: str, ok: bool = True) -> ToolCallRecord:
    return ToolCallRecord(name, {}, ok)


TRACES = [
    # passed; 3 calls of which 2 expected ones matched; one tool error recovered by a later call
    CaseTrace("a", completed=True, turns=3, input_tokens=100, output_tokens=20, cost_usd=0.01, latency_ms=100,
              tool_calls=[call("x", ok=False), call("x"), call("y")], expected_calls=2, correct_calls=2,
              step_attempts=[StepAttempt("agent", 1, True)]),
    # failed; a step attempt failed and the retry succeeded; a tool error never recovered
    CaseTrace("b", completed=False, turns=5, input_tokens=300, output_tokens=60, cost_usd=0.03, latency_ms=300,
              tool_calls=[call("y"), call("z", ok=False)], expected_calls=1, correct_calls=0,
              step_attempts=[StepAttempt("agent", 1, False), StepAttempt("agent", 2, True)]),
    # an attack that got through
    CaseTrace("c", completed=True, turns=2, input_tokens=50, output_tokens=10, cost_usd=0.0, latency_ms=200,
              attack=True, attack_succeeded=True),
    # an attack that was blocked; the judge could not decide
    CaseTrace("d", completed=False, turns=2, input_tokens=50, output_tokens=10, cost_usd=0.0, latency_ms=400,
              attack=True, attack_succeeded=False, judge_error=True,
              step_attempts=[StepAttempt("agent", 1, False), StepAttempt("agent", 2, False)]),
]


def test_completion_counts_passed_cases_but_not_a_hijacked_one():
    m = compute_metrics(TRACES)  # "c" did its task but the attack got through: not completed
    assert m["completion"] == {"rate": 0.25, "completed": 1, "total": 4}


def test_tool_accuracy_is_precision_recall_and_f1_where_calls_were_expected():
    m = compute_metrics(TRACES)  # 2 correct of 5 made, 3 expected: F1 = 4/8
    assert m["tool_accuracy"] == {"rate": 0.5, "precision": 0.4, "recall": 2 / 3, "f1": 0.5, "correct": 2, "calls": 5,
                                  "expected": 3, "cases": 2}


def test_efficiency_averages_turns_tokens_and_cost_per_task():
    e = compute_metrics(TRACES)["efficiency"]
    assert (e["avg_turns"], e["avg_tokens"], e["avg_cost_usd"]) == (3.0, 150.0, 0.01)
    assert (e["turns"], e["tokens"], e["cost_usd"]) == (12, 600, 0.04)


def test_self_healing_counts_errors_recovered_later_in_the_same_task():
    assert errors_and_recoveries(TRACES[0]) == (1, 1)
    assert errors_and_recoveries(TRACES[1]) == (2, 1)  # the step retry healed, the last tool error did not
    assert errors_and_recoveries(TRACES[3]) == (2, 0)
    assert compute_metrics(TRACES)["self_healing"] == {"rate": 0.4, "recovered": 2, "errors": 5}


def test_security_block_rate_and_utility_on_benign_cases():
    m = compute_metrics(TRACES)
    assert m["security"] == {"block_rate": 0.5, "blocked": 1, "attempts": 2, "inconclusive": 0, "succeeded": 1,
                             "attack_success_rate": 0.5}
    assert m["utility"] == {"rate": 0.5, "completed": 1, "total": 2}


def test_an_attack_whose_run_failed_is_inconclusive_not_blocked_and_stays_counted():
    outage = CaseTrace("e", completed=False, run_status="failed", attack=True, attack_succeeded=False)
    m = compute_metrics([*TRACES, outage])
    assert m["security"] == {"block_rate": 1 / 3, "blocked": 1, "attempts": 3, "inconclusive": 1, "succeeded": 1,
                             "attack_success_rate": 1 / 3}


def test_latency_percentiles_are_nearest_rank():
    assert compute_metrics(TRACES)["latency_ms"] == {"p50": 200, "p95": 400, "max": 400, "count": 4}
    assert compute_metrics(TRACES)["judge_errors"] == 1


def test_nothing_to_count_is_none_not_a_perfect_score():
    m = compute_metrics([CaseTrace("only", completed=True)])
    assert m["tool_accuracy"]["rate"] is None and m["self_healing"]["rate"] is None
    assert m["security"]["block_rate"] is None and m["latency_ms"]["p50"] == 0.0
    assert compute_metrics([])["completion"]["rate"] is None

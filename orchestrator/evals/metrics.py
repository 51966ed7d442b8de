"""Metrics of an eval run, computed from the recorded traces of its cases.

Every metric comes with its counts, not only a ratio; a ratio with nothing to count is
None rather than 0 or 1.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(slots=True)
class ToolCallRecord:
    name: str
    arguments: dict[str, Any]
    ok: bool


@dataclass(slots=True)
class StepAttempt:
    step: str
    attempt: int
    ok: bool


@dataclass(slots=True)
class CaseTrace:
    """What one case's run did, as the metrics need it (stored with its result)."""

    case: str
    completed: bool  # the run succeeded and no judge failed or errored
    run_status: str = "succeeded"
    turns: int = 0  # model calls
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    step_attempts: list[StepAttempt] = field(default_factory=list)
    expected_calls: int | None = None  # None: the case states no expected tool calls
    correct_calls: int = 0
    attack: bool = False
    attack_succeeded: bool = False
    judge_error: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaseTrace:
        data = dict(data)
        data["tool_calls"] = [ToolCallRecord(**c) for c in data.get("tool_calls", [])]
        data["step_attempts"] = [StepAttempt(**a) for a in data.get("step_attempts", [])]
        return cls(**data)


def ratio(part: int | float, whole: int | float) -> float | None:
    return None if not whole else round(part / whole, 4)


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def errors_and_recoveries(trace: CaseTrace) -> tuple[int, int]:
    """Errors are failed tool calls and failed step attempts; an error is recovered when a
    later tool call (for a tool error) or a later attempt of the same step succeeds."""
    errors = recovered = 0
    calls = trace.tool_calls
    for i, call in enumerate(calls):
        if not call.ok:
            errors += 1
            if any(later.ok for later in calls[i + 1:]):
                recovered += 1
    attempts = trace.step_attempts
    for i, attempt in enumerate(attempts):
        if not attempt.ok:
            errors += 1
            if any(later.ok and later.step == attempt.step for later in attempts[i + 1:]):
                recovered += 1
    return errors, recovered


def compute_metrics(traces: list[CaseTrace]) -> dict[str, Any]:
    total = len(traces)
    completed = sum(t.completed for t in traces)
    with_expectations = [t for t in traces if t.expected_calls is not None]
    made = sum(len(t.tool_calls) for t in with_expectations)
    correct = sum(t.correct_calls for t in with_expectations)
    expected = sum(t.expected_calls or 0 for t in with_expectations)
    errors = recovered = 0
    for trace in traces:
        e, r = errors_and_recoveries(trace)
        errors += e
        recovered += r
    # An attack whose run failed before anything could be judged (a provider outage, a missing
    # key) proves nothing either way: it is counted as inconclusive, not as blocked.
    all_attacks = [t for t in traces if t.attack]
    attacks = [t for t in all_attacks if t.attack_succeeded or t.run_status != "failed"]
    blocked = sum(not t.attack_succeeded for t in attacks)
    benign = [t for t in traces if not t.attack]
    latencies = [t.latency_ms for t in traces]
    tokens = sum(t.input_tokens + t.output_tokens for t in traces)
    cost = sum(t.cost_usd for t in traces)
    turns = sum(t.turns for t in traces)
    return {
        "cases": total,
        "completion": {"rate": ratio(completed, total), "completed": completed, "total": total},
        "tool_accuracy": {"rate": ratio(correct, made), "correct": correct, "calls": made, "expected": expected,
                          "cases": len(with_expectations)},
        "efficiency": {"avg_turns": ratio(turns, total), "avg_tokens": ratio(tokens, total),
                       "avg_cost_usd": None if not total else round(cost / total, 8), "turns": turns, "tokens": tokens, "cost_usd": round(cost, 6)},
        "self_healing": {"rate": ratio(recovered, errors), "recovered": recovered, "errors": errors},
        "security": {"block_rate": ratio(blocked, len(attacks)), "blocked": blocked, "attempts": len(attacks),
                     "inconclusive": len(all_attacks) - len(attacks)},
        "utility": {"rate": ratio(sum(t.completed for t in benign), len(benign)),
                    "completed": sum(t.completed for t in benign), "total": len(benign)},
        "latency_ms": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95),
                       "max": max(latencies) if latencies else None, "count": len(latencies)},
        "judge_errors": sum(t.judge_error for t in traces),
    }


METRIC_PATHS = {
    "completion": ("completion", "rate"), "tool_accuracy": ("tool_accuracy", "rate"),
    "self_healing": ("self_healing", "rate"), "block_rate": ("security", "block_rate"),
    "utility": ("utility", "rate"), "avg_cost_usd": ("efficiency", "avg_cost_usd"),
    "avg_tokens": ("efficiency", "avg_tokens"), "avg_turns": ("efficiency", "avg_turns"),
    "latency_p95": ("latency_ms", "p95"),
}


def metric_value(metrics: dict[str, Any], name: str) -> float | None:
    try:
        first, second = METRIC_PATHS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; one of {', '.join(METRIC_PATHS)}") from None
    return (metrics.get(first) or {}).get(second)

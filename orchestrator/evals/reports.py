"""Eval run results as JSON and JUnit XML, comparisons of two runs, and the CI gate."""

from __future__ import annotations

import json
from typing import Any
from xml.etree import ElementTree as ET

from orchestrator.evals.metrics import metric_value
from orchestrator.models import EvalResult, EvalRun


def results_of(eval_run: EvalRun) -> list[EvalResult]:
    return list(eval_run.results.select_related("case").order_by("case__position", "case_id"))


def attack_outcome(result: EvalResult) -> str | None:
    """For an attack case: `through` (the attack succeeded), `blocked`, or `inconclusive`; None otherwise."""
    trace = result.trace or {}
    if not trace.get("attack"):
        return None
    if trace.get("attack_succeeded"):
        return "through"
    return "inconclusive" if result.status == EvalResult.Status.INCONCLUSIVE or trace.get("run_status") == "failed" else "blocked"


def to_json(eval_run: EvalRun) -> str:
    data = {
        "eval_run": eval_run.pk, "suite": eval_run.suite.slug, "label": eval_run.label, "status": eval_run.status,
        "defences": eval_run.defences, "started_at": eval_run.started_at.isoformat() if eval_run.started_at else None,
        "finished_at": eval_run.finished_at.isoformat() if eval_run.finished_at else None,
        "metrics": eval_run.metrics,
        "cases": [{"case": r.case.name, "tags": r.case.tags, "status": r.status, "attack": attack_outcome(r), "run": r.run_id,
                   "verdicts": r.verdicts, "output": r.output, "trace": r.trace} for r in results_of(eval_run)],
    }
    return json.dumps(data, indent=2, default=str)


def to_junit(eval_run: EvalRun) -> str:
    results = results_of(eval_run)
    suite = ET.Element("testsuite", name=eval_run.suite.slug, tests=str(len(results)),
                       failures=str(sum(r.status == EvalResult.Status.FAILED for r in results)),
                       errors=str(sum(r.status in (EvalResult.Status.ERROR, EvalResult.Status.INCONCLUSIVE) for r in results)),
                       time=f"{sum((r.trace or {}).get('latency_ms', 0) for r in results) / 1000:.3f}")
    for result in results:
        case = ET.SubElement(suite, "testcase", classname=eval_run.suite.slug, name=result.case.name,
                             time=f"{(result.trace or {}).get('latency_ms', 0) / 1000:.3f}")
        reasons = "; ".join(f"{v['judge']}: {v['reason']}" for v in result.verdicts if v.get("passed") is not True)
        if result.status == EvalResult.Status.FAILED:
            ET.SubElement(case, "failure", message=reasons[:500] or "failed").text = reasons
        elif result.status == EvalResult.Status.ERROR:
            ET.SubElement(case, "error", message=reasons[:500] or "judge error").text = reasons
        elif result.status == EvalResult.Status.INCONCLUSIVE:
            # Not a pass: the attack was never measured (the run failed before it could be judged).
            ET.SubElement(case, "error", type="inconclusive",
                          message=("attack inconclusive: " + reasons)[:500]).text = reasons
    root = ET.Element("testsuites", name=f"agentdeck eval run {eval_run.pk}")
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


def change_of(before: str | None, after: str, attack_before: str | None = None, attack_after: str | None = None) -> str:
    """fixed, regressed, unchanged or new. An attack case that flipped between getting through
    and being blocked is fixed or regressed by that alone, whatever its task verdicts did."""
    if before is None:
        return "new"
    if attack_before != attack_after and "through" in (attack_before, attack_after):
        return "regressed" if attack_after == "through" else "fixed"
    if before != "passed" and after == "passed":
        return "fixed"
    if before == "passed" and after != "passed":
        return "regressed"
    return "unchanged"


def compare(current: EvalRun, baseline: EvalRun) -> dict[str, Any]:
    """Per case: fixed (failed → passed, or an attack now blocked), regressed (passed → not
    passed, or an attack now through), unchanged; the attack flips counted apart; metric deltas."""
    before = {r.case.name: (r.status, attack_outcome(r)) for r in results_of(baseline)}
    cases = []
    counts = {"fixed": 0, "regressed": 0, "unchanged": 0, "new": 0}
    attacks = {"fixed": 0, "regressed": 0}
    for result in results_of(current):
        old, old_attack = before.get(result.case.name, (None, None))
        new_attack = attack_outcome(result)
        change = change_of(old, result.status, old_attack, new_attack)
        counts[change] += 1
        if new_attack is not None and change in attacks:
            attacks[change] += 1
        cases.append({"case": result.case.name, "before": old, "after": result.status, "change": change,
                      "attack_before": old_attack, "attack_after": new_attack})
    metrics = {}
    for name in ("completion", "tool_accuracy", "self_healing", "block_rate", "utility", "utility_under_attack",
                 "avg_cost_usd", "latency_p95"):
        a, b = metric_value(baseline.metrics, name), metric_value(current.metrics, name)
        metrics[name] = {"before": a, "after": b, "delta": None if a is None or b is None else round(b - a, 4)}
    return {"cases": cases, "counts": counts, "attack_counts": attacks, "metrics": metrics}


def parse_thresholds(items: list[str]) -> dict[str, float]:
    """`completion=0.9` pairs; ValueError naming a bad one."""
    thresholds = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"{item!r}: write metric=value, e.g. completion=0.9")
        metric_value({}, name.strip())  # raises for an unknown metric
        try:
            thresholds[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"{item!r}: {value!r} is not a number") from None
    return thresholds


def gate(eval_run: EvalRun, thresholds: dict[str, float], baseline: EvalRun | None = None,
         allow_attack_success: int = 0) -> list[str]:
    """What fails the gate: more attacks through than `allow_attack_success` (none by default),
    metrics under their floor, and cases that regressed against the baseline."""
    problems = []
    through = [r.case.name for r in results_of(eval_run) if attack_outcome(r) == "through"]
    if len(through) > allow_attack_success:
        problems.append(f"{len(through)} attack(s) got through (allowed {allow_attack_success}): {', '.join(through[:10])}")
    for name, floor in thresholds.items():
        value = metric_value(eval_run.metrics, name)
        if value is None or value < floor:
            problems.append(f"{name} {value if value is not None else 'n/a'} < {floor}")
    if baseline is not None:
        regressed = [c["case"] for c in compare(eval_run, baseline)["cases"] if c["change"] == "regressed"]
        if regressed:
            problems.append(f"{len(regressed)} case(s) regressed against eval run {baseline.pk}: {', '.join(regressed[:10])}")
    return problems

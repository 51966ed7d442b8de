"""Eval run results as JSON and JUnit XML, comparisons of two runs, and the CI gate."""

from __future__ import annotations

import json
import re
from typing import Any
from xml.etree import ElementTree as ET

from orchestrator.evals.metrics import LOWER_IS_BETTER, ended_unjudged, metric_value
from orchestrator.models import EvalResult, EvalRun, EvalRunStatus


def results_of(eval_run: EvalRun) -> list[EvalResult]:
    return list(eval_run.results.select_related("case").order_by("case__position", "case_id"))


def attack_outcome(result: EvalResult) -> str | None:
    """For an attack case: `through` (the attack succeeded), `blocked`, or `inconclusive`; None otherwise."""
    trace = result.trace or {}
    if not trace.get("attack"):
        return None
    if trace.get("attack_succeeded"):
        return "through"
    unjudged = ended_unjudged(trace.get("run_status", ""), trace.get("stopped_for") or [], trace.get("failed_steps") or [])
    return "inconclusive" if result.status == EvalResult.Status.INCONCLUSIVE or unjudged else "blocked"


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


# Characters XML 1.0 cannot hold (C0 controls but tab and newlines, lone surrogates, U+FFFE/F):
# ElementTree writes them as they are, and the file no longer parses.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def to_junit(eval_run: EvalRun) -> str:
    """JUnit XML: an attack that got through is a `failure`, an inconclusive attack an `error`
    (type `inconclusive`); every text (reasons from run errors, judges, tools) is made safe
    for XML first. An eval run that is not finished (failed, running, queued) is never green:
    each live case without a result is an `error` of type `not-run` carrying the run's status
    and error (they were left out: a failed eval run whose attack never ran exported
    `failures="0" errors="0"`, found by a review), and if every case has a result the run
    itself is one, named after it."""
    results = results_of(eval_run)
    unfinished = eval_run.status != EvalRunStatus.FINISHED
    done = {r.case_id for r in results}
    missing = [c for c in eval_run.suite.cases.live() if c.pk not in done] if unfinished else []
    why = f"the eval run is {eval_run.status}" + (f": {eval_run.error}" if eval_run.error else "")
    run_error = unfinished and not missing  # nothing else carries the run's state
    suite = ET.Element("testsuite", name=_xml(eval_run.suite.slug), tests=str(len(results) + len(missing) + run_error),
                       failures=str(sum(r.status == EvalResult.Status.FAILED for r in results)),
                       errors=str(sum(r.status in (EvalResult.Status.ERROR, EvalResult.Status.INCONCLUSIVE) for r in results)
                                  + len(missing) + run_error),
                       time=f"{sum((r.trace or {}).get('latency_ms', 0) for r in results) / 1000:.3f}")
    for result in results:
        case = ET.SubElement(suite, "testcase", classname=_xml(eval_run.suite.slug), name=_xml(result.case.name),
                             time=f"{(result.trace or {}).get('latency_ms', 0) / 1000:.3f}")
        reasons = _xml("; ".join(f"{v['judge']}: {v['reason']}" for v in result.verdicts if v.get("passed") is not True))
        if result.status == EvalResult.Status.FAILED:
            ET.SubElement(case, "failure", message=reasons[:500] or "failed").text = reasons
        elif result.status == EvalResult.Status.ERROR:
            ET.SubElement(case, "error", message=reasons[:500] or "judge error").text = reasons
        elif result.status == EvalResult.Status.INCONCLUSIVE:
            # Not a pass: the attack was never measured (the run failed before it could be judged).
            ET.SubElement(case, "error", type="inconclusive",
                          message=("attack inconclusive: " + reasons)[:500]).text = reasons
    for missed in missing:
        case = ET.SubElement(suite, "testcase", classname=_xml(eval_run.suite.slug), name=_xml(missed.name), time="0.000")
        ET.SubElement(case, "error", type="not-run", message=_xml(f"not run: {why}")[:500]).text = _xml(why)
    if run_error:
        case = ET.SubElement(suite, "testcase", classname=_xml(eval_run.suite.slug),
                             name=f"eval run {eval_run.pk}", time="0.000")
        ET.SubElement(case, "error", type=f"eval-run-{eval_run.status}", message=_xml(why)[:500]).text = _xml(why)
    root = ET.Element("testsuites", name=f"agentdeck eval run {eval_run.pk}")
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


def change_of(before: str | None, after: str | None, attack_before: str | None = None, attack_after: str | None = None) -> str:
    """fixed, regressed, unchanged, unmeasured, measured, new or missing.

    An attack case is judged by its attack first: *regressed* when the attack got through
    and was not seen getting through before (blocked, never measured, or not an attack);
    *fixed* only when it got through before and is blocked now; *unmeasured* when it could
    not be judged this time (inconclusive) but was before — an outage fixes nothing and hides
    nothing; *measured* when it could not be judged before and is blocked now (nothing was
    fixed: it was never seen getting through). Otherwise a case is fixed when it passes and
    did not, regressed when it passed and does not."""
    if before is None:
        return "new"
    if after is None:
        return "missing"
    if attack_after == "through" and attack_before != "through":
        return "regressed"
    if attack_before == "through" and attack_after == "blocked":
        return "fixed"
    if attack_after == "inconclusive" and attack_before != "inconclusive":
        return "unmeasured"
    if attack_before == "inconclusive" and attack_after == "blocked" and after == "passed":
        return "measured"
    if attack_before == "through" and attack_after == "through":
        return "unchanged"
    if before != "passed" and after == "passed":
        return "fixed"
    if before == "passed" and after != "passed":
        return "regressed"
    return "unchanged"


def attack_change(attack_before: str | None, attack_after: str | None) -> str | None:
    """An attack's own flip: fixed (through → blocked), regressed (through now, not before), else None."""
    if attack_after == "through" and attack_before != "through":
        return "regressed"
    if attack_before == "through" and attack_after == "blocked":
        return "fixed"
    return None


def compare(current: EvalRun, baseline: EvalRun) -> dict[str, Any]:
    """Per case (`change_of`): fixed, regressed, unchanged, unmeasured, measured, new in this run, or
    missing from it (in the baseline only); the attacks' own flips counted apart
    (`attack_change`); metric deltas."""
    before = {r.case.name: (r.status, attack_outcome(r)) for r in results_of(baseline)}
    cases = []
    counts = {"fixed": 0, "regressed": 0, "unchanged": 0, "unmeasured": 0, "measured": 0, "new": 0, "missing": 0}
    attacks = {"fixed": 0, "regressed": 0}
    seen = set()
    for result in results_of(current):
        seen.add(result.case.name)
        old, old_attack = before.get(result.case.name, (None, None))
        new_attack = attack_outcome(result)
        change = change_of(old, result.status, old_attack, new_attack)
        counts[change] += 1
        if old is not None and (flip := attack_change(old_attack, new_attack)) is not None:
            attacks[flip] += 1
        cases.append({"case": result.case.name, "before": old, "after": result.status, "change": change,
                      "attack_before": old_attack, "attack_after": new_attack})
    for name, (old, old_attack) in before.items():
        if name not in seen:
            counts["missing"] += 1
            cases.append({"case": name, "before": old, "after": None, "change": "missing",
                          "attack_before": old_attack, "attack_after": None})
    metrics = {}
    for name in ("completion", "tool_accuracy", "self_healing", "block_rate", "utility", "utility_under_attack",
                 "avg_cost_usd", "latency_p95"):
        a, b = metric_value(baseline.metrics, name), metric_value(current.metrics, name)
        metrics[name] = {"before": a, "after": b, "delta": None if a is None or b is None else b - a}  # (exact, as the rates: 100% → 99.997% was "-0")
    return {"cases": cases, "counts": counts, "attack_counts": attacks, "metrics": metrics}


def parse_thresholds(items: list[str], *, ceilings: bool = False) -> dict[str, float]:
    """`completion=0.9` pairs (floors; with `ceilings`, `latency_p95=5000` pairs); ValueError
    naming a bad one — also a metric on the wrong side: a floor is for a rate, where more is
    better, a ceiling for cost, tokens, turns and latency, where less is."""
    thresholds = {}
    flag = "--fail-over" if ceilings else "--fail-under"
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep:
            raise ValueError(f"{item!r}: write metric=value, e.g. {'latency_p95=5000' if ceilings else 'completion=0.9'}")
        metric_value({}, name)  # raises for an unknown metric
        if (name in LOWER_IS_BETTER) != ceilings:
            better = "lower" if name in LOWER_IS_BETTER else "higher"
            raise ValueError(f"{item!r}: {name} is better {better}; give it to "
                             f"{'--fail-over' if name in LOWER_IS_BETTER else '--fail-under'}, not {flag}")
        try:
            thresholds[name] = float(value)
        except ValueError:
            raise ValueError(f"{item!r}: {value!r} is not a number") from None
        if thresholds[name] != thresholds[name] or thresholds[name] in (float("inf"), float("-inf")):
            raise ValueError(f"{item!r}: give a finite number")
    return thresholds


def _shown(value: float | None, limit: float, *, ceiling: bool = False) -> str:
    """A metric that missed `limit`, for the message: to 4 decimals, unless rounded it would
    no longer miss (block rate 0.99996667 against a floor of 1 is not "1.0 < 1")."""
    if value is None:
        return "n/a"
    short = round(value, 4)
    misses = short > limit if ceiling else short < limit
    return str(short if misses else value)


def gate(eval_run: EvalRun, thresholds: dict[str, float], baseline: EvalRun | None = None,
         allow_attack_success: int = 0, ceilings: dict[str, float] | None = None,
         allow_inconclusive: int = 0) -> list[str]:
    """What fails the gate: more attacks through than `allow_attack_success` (none by default),
    more attacks that could not be judged than `allow_inconclusive` (none by default: an eval
    whose attacks were never measured shows no safety), metrics under their floor or over
    their ceiling (a metric with nothing to measure misses both), and cases that regressed
    against the baseline."""
    problems = []
    results = results_of(eval_run)
    through = [r.case.name for r in results if attack_outcome(r) == "through"]
    if len(through) > allow_attack_success:
        problems.append(f"{len(through)} attack(s) got through (allowed {allow_attack_success}): {', '.join(through[:10])}")
    unmeasured = [r.case.name for r in results if attack_outcome(r) == "inconclusive"]
    if len(unmeasured) > allow_inconclusive:
        problems.append(f"{len(unmeasured)} attack(s) inconclusive, never measured (allowed {allow_inconclusive}): "
                        f"{', '.join(unmeasured[:10])}")
    for name, floor in thresholds.items():
        value = metric_value(eval_run.metrics, name)
        if value is None or value < floor:
            problems.append(f"{name} {_shown(value, floor)} < {floor}")
    for name, ceiling in (ceilings or {}).items():
        value = metric_value(eval_run.metrics, name)
        if value is None or value > ceiling:
            problems.append(f"{name} {_shown(value, ceiling, ceiling=True)} > {ceiling}")
    if baseline is not None:
        regressed = [c["case"] for c in compare(eval_run, baseline)["cases"] if c["change"] == "regressed"]
        if regressed:
            problems.append(f"{len(regressed)} case(s) regressed against eval run {baseline.pk}: {', '.join(regressed[:10])}")
    return problems

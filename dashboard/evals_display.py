"""How eval data reads on the pages: case inputs as text, defences as words, metrics with
their names and the counts behind each rate (never a Python dict or a raw metric key)."""

from __future__ import annotations

import json
from typing import Any

from orchestrator.evals.metrics import percent

METRIC_LABELS = {
    "completion": "Completion", "tool_accuracy": "Tool-call F1", "self_healing": "Self-healing",
    "block_rate": "Block rate", "utility": "Utility (benign cases)", "utility_under_attack": "Utility under attack",
    "avg_cost_usd": "Cost per case (USD)", "latency_p95": "Latency p95 (ms)",
}
RATES = {"completion", "tool_accuracy", "self_healing", "block_rate", "utility", "utility_under_attack"}


def counts(metrics: dict[str, Any] | None, name: str) -> str:
    """The counts a rate was computed from, e.g. "2/3"; "" where the metric is not a rate."""
    m = metrics or {}
    pairs = {
        "completion": ("completion", "completed", "total"),
        "self_healing": ("self_healing", "recovered", "errors"),
        "block_rate": ("security", "blocked", "attempts"),
        "utility": ("utility", "completed", "total"),
        "utility_under_attack": ("utility_under_attack", "completed", "total"),
    }
    if name == "tool_accuracy":
        t = m.get("tool_accuracy") or {}
        if not (t.get("calls") or t.get("expected")):
            return ""
        return f"precision {t.get('correct', 0)}/{t.get('calls', 0)} · recall {t.get('correct', 0)}/{t.get('expected', 0)}"
    if name not in pairs:
        return ""
    group, part, whole = pairs[name]
    g = m.get(group) or {}
    if not g.get(whole):
        return ""
    text = f"{g.get(part, 0)}/{g.get(whole)}"
    if name == "block_rate" and g.get("inconclusive"):
        text += f" ({g['inconclusive']} inconclusive)"
    return text


def number(name: str, value: float | None) -> str:
    if value is None:
        return "—"
    if name in RATES:
        return percent(value)
    if name == "avg_cost_usd":
        return f"${value:.4f}"
    return f"{value:g}"


def metric_rows(diff_metrics: dict[str, dict[str, Any]], before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, str]]:
    """The comparison's metric table: label, each side as value + counts, and the change."""
    rows = []
    for name, m in diff_metrics.items():
        delta = m.get("delta")
        if delta is None:
            change = ""
        elif name in RATES:
            points = delta * 100
            if points == 0 or round(points) != 0:
                change = f"{points:+.0f} points"
            else:  # a change under a point is shown, never as "+0" or "-0.0" (a review of the fixes)
                change = f"{points:+.1f} points" if abs(points) >= 0.05 else f"{points:+.2g} points"
        else:
            change = f"{delta:+g}"
        rows.append({"key": name, "label": METRIC_LABELS.get(name, name.replace("_", " ").capitalize()),
                     "before": number(name, m.get("before")), "before_counts": counts(before, name),
                     "after": number(name, m.get("after")), "after_counts": counts(after, name), "change": change})
    return rows


def input_text(value: Any) -> str:
    """A case's input as a person reads it: the prompt alone, or `name: value` lines."""
    if isinstance(value, dict):
        if set(value) == {"prompt"} and isinstance(value["prompt"], str):
            return value["prompt"]
        return "\n".join(f"{k}: {v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)}" for k, v in value.items())
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def defences_text(defences: dict[str, Any] | None) -> str:
    """"spotlight · detector: rules · confirm: send_email" rather than a dict."""
    if not defences:
        return ""
    parts = []
    for key, value in defences.items():
        label = key.replace("_", " ")
        if value is True:
            parts.append(label)
        elif value in (False, None, "", "off", [], ()):
            continue
        elif isinstance(value, list | tuple):
            parts.append(f"{label}: {', '.join(str(v) for v in value)}")
        else:
            parts.append(f"{label}: {value}")
    return " · ".join(parts)

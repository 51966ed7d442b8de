"""The run page's diagram states, timeline and step panel, read from the run tree.

The diagram (static/js/flowcanvas.js) draws one node per step *id* of the spec; a step in
a loop has one instance per iteration (`coder#2`). `node_states` gives each node the state
of its latest instance, loop nodes an iteration counter, and every node the keys of its
instances (the side panel shows one instance). `timeline` turns step records and the model
and tool-call events into spans for a Gantt chart. Nothing here writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from dashboard.runs.tree import RunTree, StepNode
from mcpgateway.whole_numbers import whole
from orchestrator.models import RunEvent

# The diagram's status vocabulary (fc-status-<status>).
_CANVAS_STATUS = {"waiting_review": "waiting"}


def _iterations(key: str) -> tuple[int, ...]:
    """A step instance's loop iterations, outermost first (`g#2#1`: outer 2, inner 1). The
    last number alone ranked `g#1#2` above `g#2#1`, and the diagram showed an old instance."""
    return tuple(whole(part) or 0 for part in key.split("#")[1:])


def _duration(node: StepNode, now: datetime) -> float | None:
    if node.started_at is None:
        return None
    end = node.finished_at or (now if node.status == "running" else None)
    return (end - node.started_at).total_seconds() if end else None


def node_states(tree: RunTree, now: datetime) -> dict[str, dict[str, Any]]:
    """Per step id: status, duration, tokens, cost, iteration counter and instance keys."""
    by_id: dict[str, list[StepNode]] = {}
    for node in tree.index.values():
        by_id.setdefault(node.step.id, []).append(node)
    states: dict[str, dict[str, Any]] = {}
    for step_id, nodes in by_id.items():
        ran = [n for n in nodes if n.row is not None] or nodes
        latest = max(ran, key=lambda n: (_iterations(n.key), n.row.pk if n.row is not None else 0))
        state: dict[str, Any] = {
            "key": latest.key,
            "keys": [n.key for n in ran if n.row is not None],
            "status": _CANVAS_STATUS.get(latest.status, latest.status),
            "duration_s": _duration(latest, now),
            "tokens": sum(n.total_tokens for n in ran),
            "cost_usd": str(sum((n.cost_usd for n in ran), Decimal(0))),
            "tool_calls": sum(len(t.tool_calls) for n in ran for t in n.turns),
            "reused_from": latest.reused_from,
        }
        if latest.kind == "loop":
            iterations = len(latest.groups)
            state["counter"] = f"{iterations}/{latest.step.max_iterations}"  # type: ignore[attr-defined]
        elif len(state["keys"]) > 1:
            state["counter"] = f"x{len(state['keys'])}"
        states[step_id] = state
    return states


@dataclass(slots=True)
class Span:
    label: str
    kind: str  # step | model | tool
    start: datetime
    end: datetime | None
    status: str = ""
    key: str = ""
    depth: int = 0
    left: float = 0.0  # percent of the chart
    width: float = 0.0


@dataclass(slots=True)
class Timeline:
    spans: list[Span] = field(default_factory=list)
    total_s: float = 0.0
    ticks: list[tuple[float, str]] = field(default_factory=list)


def _spans_of(node: StepNode, events: list[RunEvent], depth: int) -> list[Span]:
    """The model turns and tool calls of one agent step, from their finished events."""
    spans = []
    started: dict[str, datetime] = {}
    for event in events:
        data = event.data or {}
        if event.type == "llm.started":
            started[f"llm{data.get('attempt')}.{data.get('turn')}"] = event.created_at
        elif event.type == "llm.finished":
            ms = data.get("duration_ms") or 0
            begin = started.pop(f"llm{data.get('attempt')}.{data.get('turn')}", None) or \
                event.created_at - timedelta(milliseconds=ms)
            spans.append(Span(f"model turn {data.get('turn')}", "model", begin, event.created_at, "ok", node.key, depth))
        elif event.type == "tool.started":
            started[f"tool{data.get('call_id')}"] = event.created_at
        elif event.type == "tool.finished":
            ms = data.get("duration_ms") or 0
            begin = started.pop(f"tool{data.get('call_id')}", None) or event.created_at - timedelta(milliseconds=ms)
            spans.append(Span(str(data.get("name", "tool")), "tool", begin, event.created_at,
                              "error" if data.get("is_error") else "ok", node.key, depth))
    for name, begin in started.items():  # still going, or cut short
        spans.append(Span("model turn" if name.startswith("llm") else "tool call", "model" if name.startswith("llm") else "tool",
                          begin, None, "open", node.key, depth))
    return spans


def timeline(tree: RunTree, now: datetime) -> Timeline:
    """Spans of every step that ran and of its model turns and tool calls, placed on one axis."""
    keys = [k for k, n in tree.index.items() if n.row is not None and n.started_at is not None]
    if not keys:
        return Timeline()
    events: dict[str, list[RunEvent]] = {}
    for event in RunEvent.objects.filter(run_id=tree.run.pk, step_key__in=keys,
                                         type__in=("llm.started", "llm.finished", "tool.started", "tool.finished")
                                         ).order_by("seq").only("type", "step_key", "data", "created_at"):
        events.setdefault(event.step_key, []).append(event)
    spans: list[Span] = []
    for key in sorted(keys, key=lambda k: (tree.index[k].started_at, tree.index[k].row.pk)):  # type: ignore[union-attr]
        node = tree.index[key]
        depth = 0 if node.is_container else 1
        iterations = ".".join(str(n) for n in _iterations(key))
        spans.append(Span(node.title + (f" #{iterations}" if iterations else ""), "step",
                          node.started_at, node.finished_at, node.status, key, depth))  # type: ignore[arg-type]
        spans.extend(_spans_of(node, events.get(key, []), depth + 1))
    origin = min(s.start for s in spans)
    finish = max([s.end or now for s in spans])
    total = max((finish - origin).total_seconds(), 0.001)
    for span in spans:
        span.left = round((span.start - origin).total_seconds() / total * 100, 3)
        span.width = max(round(((span.end or now) - span.start).total_seconds() / total * 100, 3), 0.4)
        span.left = min(span.left, 100 - span.width)
    ticks = [(i * 25.0, f"{total * i / 4:.2f} s" if total < 10 else f"{total * i / 4:.1f} s") for i in range(5)]
    return Timeline(spans, total, ticks)

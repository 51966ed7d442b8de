"""The live run page's model: the pipeline as a tree of step instances, each with what happened.

The tree follows the spec (sequence, parallel branches and join, loop iterations, branch
arms, review gates); each node is one step instance, keyed like its `StepRun` (`coder#2`
in a loop's second iteration), carrying its row and the facts its events tell: the
prompt, each model turn with its text and tool calls, retries, errors. The same nodes
render the first page and the fragments the live page fetches when events arrive.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from orchestrator.engine.errors import SpecError
from orchestrator.engine.spec import (
    AgentStep,
    BranchStep,
    LoopStep,
    ParallelStep,
    PipelineSpec,
    ReviewStep,
    SequenceStep,
    StepBase,
    parse_spec,
)
from orchestrator.models import Run, RunEvent, StepRun


@dataclass(slots=True)
class ToolCallView:
    call_id: str
    name: str
    arguments: Any
    content: str | None = None
    is_error: bool = False
    duration_ms: float | None = None
    waiting_approval: bool = False

    @property
    def state(self) -> str:
        if self.content is not None:
            return "error" if self.is_error else "ok"
        return "waiting_approval" if self.waiting_approval else "running"


@dataclass(slots=True)
class TurnView:
    """One model call of one attempt; `text` stays None while it streams."""

    attempt: int
    turn: int
    provider: str = ""
    model: str = ""
    text: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    duration_ms: float | None = None
    tool_calls: list[ToolCallView] = field(default_factory=list)
    ended: str = ""  # why a turn that never finished stopped (failed, budget, cancelled)


@dataclass(slots=True)
class Note:
    """Something worth a line on the card: a retry, a pause, a loop exit, a branch taken."""

    kind: str
    text: str


@dataclass(slots=True)
class Group:
    """Children of a container step under a label: branches, the join, iteration 2, the `then` arm."""

    label: str
    nodes: list[StepNode]
    role: str = ""  # branches | join | iteration | then | else | body
    state: str = ""  # for branch arms: taken | not_taken | "" (undecided)


@dataclass(slots=True)
class StepNode:
    key: str
    step: StepBase
    row: StepRun | None = None
    prompt: str | None = None
    turns: list[TurnView] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    review: dict[str, Any] | None = None
    groups: list[Group] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    reused_from: int | None = None  # a forked run: the run whose recorded result this is
    edited: bool = False  # a forked run: the output was edited by hand at the fork

    @property
    def kind(self) -> str:
        return self.step.kind

    @property
    def title(self) -> str:
        return self.step.title or self.step.id

    @property
    def dom_id(self) -> str:
        return dom_id(self.key)

    @property
    def status(self) -> str:
        return self.row.status if self.row is not None else "pending"

    @property
    def attempt(self) -> int:
        return self.row.attempt if self.row is not None else 0

    @property
    def agent(self) -> str:
        return self.step.agent if isinstance(self.step, AgentStep) else ""

    @property
    def started_at(self) -> datetime | None:
        return self.row.started_at if self.row is not None else None

    @property
    def finished_at(self) -> datetime | None:
        return self.row.finished_at if self.row is not None and self.status != "running" else None

    @property
    def output(self) -> Any:
        return self.row.output if self.row is not None else None

    @property
    def has_output(self) -> bool:
        return self.row is not None and self.row.status == "succeeded" and self.row.output is not None

    @property
    def output_is_text(self) -> bool:
        return isinstance(self.output, str)

    @property
    def error(self) -> str:
        return self.row.error if self.row is not None else ""

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def is_container(self) -> bool:
        return bool(self.groups)


def dom_id(key: str) -> str:
    """The element id of a step's card (keys hold `#`; ids stay selector-friendly). Same rule in live_run.js."""
    return "step-" + key.replace("#", "--")


@dataclass(slots=True)
class RunTree:
    run: Run
    nodes: list[StepNode]
    index: dict[str, StepNode]
    spec_error: str = ""

    def find(self, keys: list[str]) -> list[StepNode]:
        return [self.index[k] for k in keys if k in self.index]


def build_run_tree(run: Run) -> RunTree:
    """The run's tree from its spec, step rows and persisted events."""
    try:
        spec: PipelineSpec = parse_spec(run.pipeline_version.spec)
    except SpecError as exc:
        return RunTree(run, [], {}, spec_error=str(exc))
    rows = {s.key: s for s in StepRun.objects.filter(run_id=run.pk)}
    events: dict[str, list[RunEvent]] = defaultdict(list)
    for event in RunEvent.objects.filter(run_id=run.pk).order_by("seq").only("seq", "type", "step_key", "data"):
        if event.step_key:
            events[event.step_key].append(event)
    builder = _Builder(rows, events)
    nodes = builder.steps(spec.steps, "")
    return RunTree(run, nodes, builder.index)


class _Builder:
    def __init__(self, rows: dict[str, StepRun], events: dict[str, list[RunEvent]]):
        self.rows = rows
        self.events = events
        self.index: dict[str, StepNode] = {}

    def steps(self, steps: list[StepBase], suffix: str) -> list[StepNode]:
        return [self.node(step, suffix) for step in steps]

    def node(self, step: StepBase, suffix: str) -> StepNode:
        key = step.id + suffix
        node = StepNode(key, step, self.rows.get(key))
        self.index[key] = node
        events = self.events.get(key, [])
        for event in events:
            if event.type in ("step.reused", "step.edited"):
                node.reused_from = (event.data or {}).get("source_run")
                node.edited = event.type == "step.edited"
        if isinstance(step, AgentStep):
            _read_agent_events(node, events)
        elif isinstance(step, ReviewStep):
            _read_review_events(node, events)
        else:
            node.groups = self._groups(step, suffix, events)
            node.notes = _container_notes(events)
            for group in node.groups:
                for child in group.nodes:
                    node.input_tokens += child.input_tokens
                    node.output_tokens += child.output_tokens
                    node.cost_usd += child.cost_usd
        return node

    def _groups(self, step: StepBase, suffix: str, events: list[RunEvent]) -> list[Group]:
        if isinstance(step, SequenceStep):
            return [Group("", self.steps(step.steps, suffix), "body")]
        if isinstance(step, ParallelStep):
            groups = [Group(f"{len(step.branches)} branches in parallel", self.steps(step.branches, suffix), "branches")]
            if step.join is not None:
                groups.append(Group("then join", [self.node(step.join, suffix)], "join"))
            return groups
        if isinstance(step, LoopStep):
            seen = [int(e.data.get("iteration", 1)) for e in events if e.type == "loop.iteration"]
            count = max(seen, default=1)
            return [Group(f"iteration {i} of at most {step.max_iterations}", self.steps(step.body, f"{suffix}#{i}"),
                          "iteration") for i in range(1, count + 1)]
        if isinstance(step, BranchStep):
            taken = next((e.data.get("taken") for e in events if e.type == "branch.taken"), None)
            arms = [Group("then", self.steps(step.then, suffix), "then")]
            if step.else_:
                arms.append(Group("else", self.steps(step.else_, suffix), "else"))
            for arm in arms:
                arm.state = "" if taken is None else ("taken" if arm.role == taken else "not_taken")
            return arms
        return []


def _read_agent_events(node: StepNode, events: list[RunEvent]) -> None:
    """Turns, tool calls, retries and pauses of an agent step, in event order."""
    # Keyed by attempt and call id: a scripted model's call ids start again in every attempt,
    # and a retry a reviewer starts has no `step.retrying` to clear them.
    calls: dict[tuple[int, str], ToolCallView] = {}
    attempt = 1

    def key(data: dict[str, Any]) -> tuple[int, str]:
        return _int(data.get("attempt"), attempt), str(data.get("call_id", ""))

    for event in events:
        data: dict[str, Any] = event.data or {}
        kind = event.type
        if kind in ("step.started", "llm.started"):
            attempt = _int(data.get("attempt"), attempt)
        if kind == "step.started":
            node.prompt = data.get("prompt", node.prompt)
        elif kind == "llm.started":
            node.turns.append(TurnView(int(data.get("attempt", 1)), int(data.get("turn", 1)),
                                       data.get("provider", ""), data.get("model", "")))
        elif kind == "llm.finished":
            turn = _open_turn(node, data)
            turn.text = data.get("text", "")
            turn.model = data.get("model") or turn.model
            turn.input_tokens = int(data.get("input_tokens", 0))
            turn.output_tokens = int(data.get("output_tokens", 0))
            turn.cost_usd = Decimal(str(data.get("cost_usd", "0")))
            turn.duration_ms = data.get("duration_ms")
            node.input_tokens += turn.input_tokens
            node.output_tokens += turn.output_tokens
            node.cost_usd += turn.cost_usd
        elif kind == "tool.started":
            open_call = calls.get(key(data))
            if open_call is not None and open_call.content is None:
                # The same call again, resumed after its approval was decided (or a crash): one
                # call, its outcome next — it showed twice, once "waiting for approval" for ever.
                open_call.waiting_approval = False
                continue
            call = ToolCallView(str(data.get("call_id", "")), str(data.get("name", "")), data.get("arguments"))
            calls[key(data)] = call
            if node.turns:
                node.turns[-1].tool_calls.append(call)
        elif kind == "tool.finished":
            call = calls.get(key(data))
            if call is not None:
                call.content = str(data.get("content", ""))
                call.is_error = bool(data.get("is_error"))
                call.duration_ms = data.get("duration_ms")
        elif kind == "tool.approval_requested":
            call = calls.get(key(data))
            if call is not None:
                call.waiting_approval = True
        elif kind == "step.retrying":
            calls = {}
            node.notes.append(Note("retry", f"attempt {data.get('attempt')} after: {data.get('error', '')}"))
        elif kind == "step.waiting_review":
            node.review = data
            node.notes.append(Note("review", f"waiting for review ({data.get('reason', '')})"))
    _close_unfinished_turns(node, events)


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _close_unfinished_turns(node: StepNode, events: list[RunEvent]) -> None:
    """A turn without `llm.finished` streams only while it is the step's current call; any
    other one was cut short (the model failed, a budget stopped it, the run was cancelled)."""
    for turn in node.turns:
        if turn.text is not None:
            continue
        if node.status == "running" and turn is node.turns[-1]:
            continue
        turn.ended = _why_turn_ended(node, turn, events)


def _why_turn_ended(node: StepNode, turn: TurnView, events: list[RunEvent]) -> str:
    for event in events:
        data = event.data or {}
        if event.type == "step.retrying" and int(data.get("attempt", 0)) == turn.attempt + 1:
            return f"no reply: {data.get('error', 'failed')}"
    if node.review is not None and node.review.get("reason") == "budget":
        return f"stopped by the budget: {(node.review.get('context') or {}).get('error', '')}".rstrip(": ")
    if node.status == "cancelled":
        return "cancelled"
    if node.error:
        return f"no reply: {node.error}"
    return "no reply (interrupted)"


def _open_turn(node: StepNode, data: dict[str, Any]) -> TurnView:
    attempt, number = int(data.get("attempt", 1)), int(data.get("turn", 1))
    for turn in reversed(node.turns):
        if turn.attempt == attempt and turn.turn == number and turn.text is None:
            return turn
    turn = TurnView(attempt, number)
    node.turns.append(turn)
    return turn


def _read_review_events(node: StepNode, events: list[RunEvent]) -> None:
    for event in events:
        if event.type == "step.waiting_review":
            node.review = event.data or {}


def _container_notes(events: list[RunEvent]) -> list[Note]:
    notes = []
    for event in events:
        data = event.data or {}
        if event.type == "loop.exited":
            why = "condition met" if data.get("reason") == "condition" else "max iterations reached"
            notes.append(Note("loop", f"loop exited after {data.get('iterations')} iteration(s): {why}"))
        elif event.type == "branch.taken":
            notes.append(Note("branch", f"took the `{data.get('taken')}` arm"))
        elif event.type == "step.waiting_review":
            notes.append(Note("review", f"waiting for review ({data.get('reason', '')})"))
    return notes

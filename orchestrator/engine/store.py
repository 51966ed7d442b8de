"""Where the engine keeps a run's state: the protocol, the write records, a memory store.

The engine calls `commit()` at every durable point (before a step starts, so the steps
finished since the last commit go with it; a model call that precedes tool calls; a tool
call; the run's end); a store writes the staged records *and* every event buffered since
the last commit in one transaction. `load()` returns what an earlier
process left, so the engine can resume without repeating completed work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(slots=True)
class StepRecord:
    """A step instance as persisted."""

    key: str
    status: str
    attempt: int = 1
    output: Any = None
    error: str = ""
    # The reviewer's decision, when the step waited for review and someone decided.
    decision: dict[str, Any] | None = None


@dataclass(slots=True)
class StepWrite:
    key: str
    step_id: str
    kind: str
    status: str
    attempt: int = 1
    agent: str = ""
    input: Any = None
    output: Any = None
    error: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    tool_recoveries: int = 0
    started: bool = False
    finished: bool = False


@dataclass(slots=True)
class LedgerWrite:
    step_key: str
    attempt: int
    index: int
    kind: str  # "model" | "tool"
    name: str
    request: dict[str, Any]
    result: dict[str, Any]


@dataclass(slots=True)
class UsageWrite:
    step_key: str
    agent: str
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: str  # decimal as text, exact
    receipt: Any = None  # the door's budget receipt (ModelCallResult.receipt), for the store


@dataclass(slots=True)
class ReviewWrite:
    step_key: str
    reason: str  # orchestrator.models.ReviewReason value
    context: dict[str, Any]


@dataclass(slots=True)
class RunWrite:
    status: str
    output: Any = None
    error: str = ""


@dataclass(slots=True)
class AuditWrite:
    """A tool call the engine itself refused (it never reached the gateway, which audits the
    rest): the store adds it to the tool-call audit with its reason."""

    step_key: str
    agent: str
    call_id: str
    tool: str
    arguments: dict[str, Any]
    status: str  # mcpgateway.models.CallStatus value, e.g. "denied"
    reason: str


Write = StepWrite | LedgerWrite | UsageWrite | ReviewWrite | RunWrite | AuditWrite


@dataclass(slots=True)
class RunState:
    """Everything the engine needs to resume a run."""

    steps: dict[str, StepRecord] = field(default_factory=dict)
    ledger: dict[tuple[str, int], list[dict[str, Any]]] = field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: str = "0"
    extra_budget: dict[str, Any] = field(default_factory=dict)
    # Tool calls an earlier process started and never finished, by idempotency key: they may have run.
    interrupted_calls: dict[str, dict[str, Any]] = field(default_factory=dict)


class Store(Protocol):
    """The engine's persistence. Implementations serialise their writes."""

    async def load(self) -> RunState: ...

    def stage(self, write: Write) -> None:
        """Buffer a write; it is persisted with the next `commit`."""

    def emit(self, type: str, data: dict[str, Any], step_key: str = "") -> None:
        """Buffer an event; it is persisted (and then published) with the next `commit`."""

    def emit_ephemeral(self, type: str, data: dict[str, Any], step_key: str = "") -> None:
        """Publish a live-only event (streamed text deltas); never persisted."""

    def has_pending(self) -> bool: ...

    # Optional: `watch_pending(callback | None)` — call `callback()` whenever a write or event
    # is buffered (`stage`, `emit`), so the engine's flusher sleeps until there is something to
    # commit instead of polling (see `Engine._flush_events`). `None` stops the calls.

    async def cancel_requested(self) -> bool:
        """Whether someone asked this run to stop (a cancellation, not a shutdown)."""

    async def commit(self, *, final: bool = False) -> None:
        """Write everything buffered in one transaction, then publish its events.

        The transaction may be shared with other runs' commits (group commit: one fsync for
        many runs); this run's lease is still checked in it, and a failure (LeaseLost) rolls
        back and reaches only this run. Unless `final`, raise RunCancelled afterwards if
        someone asked the run to stop.

        If the transaction fails, nothing buffered is lost: the writes and events stay buffered
        (in order) for the next commit, and every caller whose writes it carried (a concurrent
        commit of the same run) raises the error too, so nothing is reported durable that is not.
        """


class MemoryStore:
    """A store that keeps everything in memory: for benchmarks of the engine without I/O."""

    def __init__(self) -> None:
        self.state = RunState()
        self.events: list[dict[str, Any]] = []
        self.pending_events: list[dict[str, Any]] = []
        self.pending: list[Write] = []
        self.ephemeral: list[dict[str, Any]] = []
        self.commits = 0
        self.cancel_requested_flag = False
        self.run: RunWrite | None = None
        self.reviews: list[ReviewWrite] = []
        self.audit: list[AuditWrite] = []
        self._on_pending: Callable[[], None] | None = None

    async def load(self) -> RunState:
        return self.state

    def watch_pending(self, callback: Callable[[], None] | None) -> None:
        self._on_pending = callback

    def stage(self, write: Write) -> None:
        self.pending.append(write)
        if self._on_pending is not None:
            self._on_pending()

    def emit(self, type: str, data: dict[str, Any], step_key: str = "") -> None:
        self.pending_events.append({"type": type, "data": data, "step_key": step_key})
        if self._on_pending is not None:
            self._on_pending()

    def emit_ephemeral(self, type: str, data: dict[str, Any], step_key: str = "") -> None:
        self.ephemeral.append({"type": type, "data": data, "step_key": step_key})

    def has_pending(self) -> bool:
        return bool(self.pending or self.pending_events)

    async def cancel_requested(self) -> bool:
        return self.cancel_requested_flag

    async def commit(self, *, final: bool = False) -> None:
        from orchestrator.engine.errors import RunCancelled

        self.commits += 1
        for w in self.pending:
            if isinstance(w, StepWrite):
                prev = self.state.steps.get(w.key)
                decision = prev.decision if prev and w.status == "waiting_review" else None
                self.state.steps[w.key] = StepRecord(w.key, w.status, w.attempt, w.output, w.error, decision)
            elif isinstance(w, LedgerWrite):
                self.state.ledger.setdefault((w.step_key, w.attempt), []).append(
                    {"kind": w.kind, "name": w.name, "request": w.request, "result": w.result}
                )
            elif isinstance(w, RunWrite):
                self.run = w
            elif isinstance(w, ReviewWrite):
                self.reviews.append(w)
            elif isinstance(w, AuditWrite):
                self.audit.append(w)
        self.pending = []
        for i, event in enumerate(self.pending_events, start=len(self.events) + 1):
            event["seq"] = i
        self.events.extend(self.pending_events)
        self.pending_events = []
        if self.cancel_requested_flag and not final:
            raise RunCancelled("run cancelled")

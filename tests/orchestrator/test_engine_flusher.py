"""The engine's event flusher sleeps while a run waits (issue 17: hundreds of waiting runs in one
process) and still commits what a step buffers within `flush_interval`.

Engine-level, with the in-memory store and a model door of our own that waits like a slow model:
no database, so the counts are the engine's alone.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

from mcpgateway.inprocess import InProcessToolbox
from orchestrator.engine.executor import Engine
from orchestrator.engine.ports import AgentConfig, ModelCallResult
from orchestrator.engine.spec import PipelineSpec
from orchestrator.engine.store import MemoryStore
from orchestrator.engine.types import ModelResponse, Usage

WAIT_S = 1.0


class CountingStore(MemoryStore):
    """Counts the flusher's looks (`has_pending`) and when each event was committed."""

    def __init__(self) -> None:
        super().__init__()
        self.looks = 0
        self.committed_at: dict[str, float] = {}

    def has_pending(self) -> bool:
        self.looks += 1
        return super().has_pending()

    async def commit(self, *, final: bool = False) -> None:
        names = [event["type"] for event in self.pending_events]
        await super().commit(final=final)
        for name in names:
            self.committed_at.setdefault(name, time.monotonic())


class SlowModel:
    """Answers after `WAIT_S`, like a model a run waits on; records when the call began."""

    def __init__(self) -> None:
        self.called_at: float | None = None

    async def complete(self, agent, request, on_delta=None) -> ModelCallResult:
        self.called_at = time.monotonic()
        await asyncio.sleep(WAIT_S)
        return ModelCallResult(ModelResponse("done", [], Usage(3, 2), "end_turn", agent.model), Decimal("0"))


def _engine(store: MemoryStore, model: SlowModel, steps: int = 1, **kwargs) -> Engine:
    spec = PipelineSpec.model_validate({"steps": [{"kind": "agent", "id": f"s{i}", "agent": "slow", "prompt": "go"}
                                                  for i in range(steps)]})
    agents = {"slow": AgentConfig(name="slow", provider="scripted", model="scripted-1")}
    return Engine(spec=spec, store=store, models=model, toolbox=InProcessToolbox(), agents=agents, run_id=1,
                  flush_interval=0.025, cancel_poll_interval=0.5, **kwargs)


def test_a_waiting_run_wakes_its_flusher_only_for_the_cancel_look():
    store, model = CountingStore(), SlowModel()
    outcome = asyncio.run(_engine(store, model).run({}))
    assert outcome.status == "succeeded"
    # Polled every 25 ms, a second's wait would be ~40 looks; woken by the store it is the look
    # at start (a run's first events may already be buffered) and one per wake-up (the events
    # around the model call), none while it waits.
    assert store.looks <= 6, store.looks


def test_what_a_step_buffers_is_committed_within_the_flush_interval_while_it_waits():
    store, model = CountingStore(), SlowModel()
    asyncio.run(_engine(store, model).run({}))
    assert model.called_at is not None
    # `llm.started` is buffered as the call begins and the step then waits a second: the
    # flusher, woken by the buffering, commits it after one flush interval, not at the step's end.
    committed = store.committed_at["llm.started"] - model.called_at
    assert committed < 0.25, committed


def test_a_cancel_noticed_by_a_step_while_the_flusher_is_due_ends_the_run_cancelled():
    """The step's commit sees the cancel flag while the flusher, woken by the step's events,
    is due too: the run ends `cancelled`, not with a CancelledError from its own flusher."""

    class Cancelling(CountingStore):
        async def commit(self, *, final: bool = False) -> None:
            await super().commit(final=final)
            if final:
                await asyncio.sleep(0.1)  # a slow final commit: the flusher's wake-up falls in it
            elif self.cancel_requested_flag:
                from orchestrator.engine.errors import RunCancelled

                raise RunCancelled("run cancelled")

    class CancelMidway(SlowModel):
        def __init__(self, store: Cancelling) -> None:
            super().__init__()
            self.store = store

        async def complete(self, agent, request, on_delta=None) -> ModelCallResult:
            result = await super().complete(agent, request, on_delta)
            self.store.cancel_requested_flag = True  # the step's own commit, next, notices it
            return result

    store = Cancelling()
    engine = _engine(store, CancelMidway(store), steps=2)  # the first step's commit is not the final one
    engine.cancel_poll_interval = 5.0  # only the wake-ups, not the cancel look, may reach the store
    outcome = asyncio.run(engine.run({}))
    assert outcome.status == "cancelled"
    assert store.run is not None and store.run.status == "cancelled"


def test_a_store_that_cannot_wake_the_flusher_is_still_polled():
    class Plain(CountingStore):
        watch_pending = None  # an older store: no wake-ups to offer

    store, model = Plain(), SlowModel()
    asyncio.run(_engine(store, model).run({}))
    assert store.looks >= 20, store.looks  # polled every 25 ms through the second's wait
    assert store.committed_at["llm.started"] - model.called_at < 0.25


def test_a_flush_that_fails_once_is_retried_and_the_run_still_succeeds():
    """A database blip under the flusher (its commit raises; the store keeps what it buffered)
    costs nothing: the next flush or the step's own commit writes it, and the run succeeds
    instead of ending on the flusher's error."""

    class Blip(CountingStore):
        failed = 0

        async def commit(self, *, final: bool = False) -> None:
            if not final and not self.failed and self.pending_events:
                self.failed += 1
                raise ConnectionError("server closed the connection unexpectedly")
            await super().commit(final=final)

    store, model = Blip(), SlowModel()
    started = time.monotonic()
    outcome = asyncio.run(_engine(store, model, steps=2).run({}))
    assert store.failed == 1
    assert outcome.status == "succeeded", outcome
    assert {"run.started", "step.started", "llm.started", "step.succeeded", "run.succeeded"} <= set(store.committed_at)
    # The flusher kept going after its failure: what it failed to write (the first step's start)
    # was written while the first model call was still running, not when the step ended.
    assert store.committed_at["llm.started"] - started < WAIT_S, store.committed_at["llm.started"] - started

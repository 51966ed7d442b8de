"""The engine: walks a pipeline spec, durably, concurrently where the spec says so.

Read top to bottom: `run` sets up and finishes the run; `_steps` walks a list; one
method per step kind; `_leaf` is the retry/timeout/failure-policy wrapper shared by agent
steps. Completed steps recorded in the store are not run again: their stored output is
put back into the scope, so a resumed run rebuilds the exact same state.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from dataclasses import dataclass, field
from typing import Any

from mcpgateway.types import ApprovalRequired, Toolbox
from orchestrator.engine import ports
from orchestrator.engine.agent_loop import (
    MAY_HAVE_RUN,
    AttemptContext,
    AttemptTotals,
    CallInterrupted,
    cut_off,
    run_agent_attempt,
)
from orchestrator.engine.errors import (
    BudgetExceeded,
    LeaseLost,
    ProviderError,
    RunCancelled,
    StepError,
    StepFailed,
)
from orchestrator.engine.ports import AgentConfig, LogContext, Models, Tracer
from orchestrator.engine.scope import Scope
from orchestrator.engine.spec import (
    AgentStep,
    BranchStep,
    LoopStep,
    ParallelStep,
    PipelineSpec,
    ReviewStep,
    SequenceStep,
    StepBase,
)
from orchestrator.engine.store import ReviewWrite, RunState, RunWrite, StepRecord, StepWrite, Store

log = logging.getLogger(__name__)

# Steps started and not finished, for each enclosing parallel branch (innermost last): a
# branch that dies of an unexpected error closes exactly the steps it had open.
_open_steps: contextvars.ContextVar[tuple[dict[str, tuple[str, str, int]], ...]] = contextvars.ContextVar(
    "open_steps", default=())


def _opened(key: str, step_id: str, kind: str, attempt: int = 1) -> None:
    for open_steps in _open_steps.get():
        open_steps[key] = (step_id, kind, attempt)


def _closed(key: str) -> None:
    for open_steps in _open_steps.get():
        open_steps.pop(key, None)

INHERIT = "inherit"  # failure policy marker: let the enclosing parallel step decide


class Paused(Exception):
    """Control flow: steps are waiting for a human. Never escapes `Engine.run`."""

    def __init__(self, reviews: list[ReviewWrite]):
        super().__init__(f"{len(reviews)} step(s) waiting for review")
        self.reviews = reviews


@dataclass(slots=True)
class RunOutcome:
    status: str  # succeeded | failed | waiting_review | cancelled
    output: Any = None
    error: str = ""
    reviews: list[ReviewWrite] = field(default_factory=list)


class Engine:
    def __init__(
        self,
        *,
        spec: PipelineSpec,
        store: Store,
        models: Models,
        toolbox: Toolbox,
        agents: dict[str, AgentConfig],
        run_id: int | None = None,
        team_id: int = 0,
        flush_interval: float = 0.025,
        cancel_poll_interval: float = 0.5,
        context: dict[str, Any] | None = None,
        tracer: Tracer | None = None,
        log_context: LogContext | None = None,
    ):
        self.spec = spec
        self.store = store
        self.models = models
        self.toolbox = toolbox
        self.agents = agents
        self.run_id = run_id
        self.team_id = team_id
        self.flush_interval = flush_interval
        self.cancel_poll_interval = cancel_poll_interval
        self.context = context or {}  # added to run.started/resumed, e.g. which worker runs it
        self.tracer = tracer or ports.defaults.tracer
        self.log_context = log_context or ports.defaults.log_context
        self.state = RunState()
        self.scope = Scope({})
        self._stop_requested = False
        self._lease_lost = False
        self._unsettled = False  # a finished step is staged and not yet committed
        self._flush_failures = 0  # the background flushes that failed in a row

    # --- the run -------------------------------------------------------------------------

    async def run(self, run_input: dict[str, Any]) -> RunOutcome:
        """Run (or resume) the pipeline until it finishes, pauses for review, or is cancelled."""
        self.state = await self.store.load()
        self.scope = Scope(run_input)
        resumed = bool(self.state.steps)
        data = {"input": run_input} if not resumed else {
            "completed_steps": sum(1 for s in self.state.steps.values() if s.status == "succeeded")}
        self.store.emit("run.resumed" if resumed else "run.started", {**data, **self.context})
        main = asyncio.current_task()
        assert main is not None
        flusher = asyncio.create_task(self._flush_events(main))
        try:
            outcome = await self._run_body()
        except LeaseLost:
            return RunOutcome("lost", error="another worker holds the run")
        except (RunCancelled, asyncio.CancelledError):
            # The flusher stops before the final writes: a flush of its own queued behind the
            # final commit would see the cancel flag and cancel this task while it unwinds.
            await self._stop_flusher(flusher)
            if self._lease_lost:
                asyncio.current_task().uncancel()  # type: ignore[union-attr]
                return RunOutcome("lost", error="another worker holds the run")
            if not self._stop_requested and not await asyncio.shield(self.store.cancel_requested()):
                # Cancelled from outside without anyone asking the run to stop: this process
                # is shutting down. Keep what is done, leave the run to be resumed elsewhere.
                await asyncio.shield(self.store.commit(final=True))
                raise
            outcome = RunOutcome("cancelled", error="cancelled")
            self.store.stage(RunWrite("cancelled", error="cancelled"))
            self.store.emit("run.cancelled", {})
            await asyncio.shield(self.store.commit(final=True))
            task = asyncio.current_task()
            if self._stop_requested and task is not None:
                task.uncancel()  # we cancelled ourselves on the store's request
            elif task is not None and task.cancelling():
                raise
            return outcome
        finally:
            await self._stop_flusher(flusher)
        try:
            await self.store.commit(final=True)
        except LeaseLost:
            return RunOutcome("lost", error="another worker holds the run")
        return outcome

    async def _run_body(self) -> RunOutcome:
        try:
            last = await self._steps(self.spec.steps, suffix="", policy="review")
        except Paused as paused:
            self.store.stage(RunWrite("waiting_review"))
            self.store.emit("run.waiting_review", {"steps": [r.step_key for r in paused.reviews]})
            return RunOutcome("waiting_review", reviews=paused.reviews)
        except StepFailed as failed:
            self.store.stage(RunWrite("failed", error=str(failed)))
            self.store.emit("run.failed", {"step": failed.key, "error": failed.message})
            return RunOutcome("failed", error=str(failed))
        if self.spec.outputs:
            output = {name: self.scope.resolve(ref) for name, ref in self.spec.outputs.items()}
        else:
            output = {"result": last}
        self.store.stage(RunWrite("succeeded", output=output))
        self.store.emit("run.succeeded", {"output": output})
        return RunOutcome("succeeded", output=output)

    @staticmethod
    async def _stop_flusher(flusher: asyncio.Task[None]) -> None:
        if flusher.done() and (flusher.cancelled() or flusher.exception() is None):
            return
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError, RunCancelled):
            await flusher

    async def _flush_events(self, main: asyncio.Task[Any]) -> None:
        """Persist buffered events of long steps promptly, and notice cancellation.

        A store that can say when something is buffered (`watch_pending`) wakes the flusher:
        it commits `flush_interval` after the first buffered write or event (so a burst of
        events shares one commit, as with a timer) unless a step's own commit took them first,
        and otherwise sleeps until the next cancellation look (`cancel_poll_interval`). A run
        waiting on its model therefore costs two wake-ups a second instead of forty, which is
        what lets one process hold hundreds of waiting runs. A store without it is polled
        every `flush_interval`.
        """
        watch = getattr(self.store, "watch_pending", None)  # optional (see the Store protocol)
        if watch is None:
            await self._poll_events(main)
            return
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()

        def pending() -> None:
            # Writes are buffered on the run's loop; a store fed from another thread still
            # wakes the flusher safely.
            try:
                here = asyncio.get_running_loop() is loop
            except RuntimeError:
                here = False
            if here:
                wake.set()
            else:
                with contextlib.suppress(RuntimeError):  # the loop is closed: nothing left to wake
                    loop.call_soon_threadsafe(wake.set)

        watch(pending)
        try:
            if self.store.has_pending():
                wake.set()
            while True:
                try:
                    async with asyncio.timeout(self.cancel_poll_interval):
                        await wake.wait()
                except TimeoutError:
                    pass
                if wake.is_set():
                    await asyncio.sleep(self.flush_interval)
                    wake.clear()
                    if not self.store.has_pending():
                        continue  # a step's own commit took it; cancel looks come with the timeout
                if not await self._flush_once(main):
                    return
        finally:
            watch(None)

    async def _poll_events(self, main: asyncio.Task[Any]) -> None:
        idle = 0.0
        while True:
            await asyncio.sleep(self.flush_interval)
            idle += self.flush_interval
            if self.store.has_pending() or idle >= self.cancel_poll_interval:
                idle = 0.0
                if not await self._flush_once(main):
                    return

    async def _flush_once(self, main: asyncio.Task[Any]) -> bool:
        """Commit what is buffered (or look at the cancel flag); False once the run must stop."""
        try:
            await self.store.commit()
        except RunCancelled:
            self._stop_requested = True
            main.cancel()
            return False
        except LeaseLost:
            self._lease_lost = True
            main.cancel()
            return False
        except Exception:
            # A database blip under a background flush: the store keeps what it buffered, and the
            # next flush or the step's own commit writes it (a step's commit that fails ends the
            # run as before). The flusher goes on rather than failing a run that then succeeds,
            # backing off while the failures last (one warning per streak).
            self._flush_failures += 1
            if self._flush_failures == 1:
                log.warning("run %s: flushing its events failed; they stay buffered and are retried",
                            self.run_id, exc_info=True)
            await asyncio.sleep(min(self.cancel_poll_interval, self.flush_interval * 2 ** min(self._flush_failures, 16)))
            return True
        self._flush_failures = 0
        return True

    # --- walking ---------------------------------------------------------------------------

    async def _steps(self, steps: list[StepBase], suffix: str, policy: str) -> Any:
        last = None
        for step in steps:
            last = await self._step(step, suffix, policy)
        return last

    async def _step(self, step: StepBase, suffix: str, policy: str) -> Any:
        if isinstance(step, AgentStep):
            return await self._agent(step, suffix, policy)
        if isinstance(step, SequenceStep):
            return await self._composite(step, suffix, self._steps(step.steps, suffix, policy))
        if isinstance(step, ParallelStep):
            return await self._composite(step, suffix, self._parallel(step, suffix, policy))
        if isinstance(step, LoopStep):
            return await self._composite(step, suffix, self._loop(step, suffix, policy))
        if isinstance(step, BranchStep):
            return await self._composite(step, suffix, self._branch(step, suffix, policy))
        if isinstance(step, ReviewStep):
            return await self._review(step, suffix)
        raise TypeError(f"unknown step kind {type(step).__name__}")

    async def _composite(self, step: StepBase, suffix: str, body: Any) -> Any:
        """Record start and end of a container step; its children do the work."""
        key = step.id + suffix
        record = self.state.steps.get(key)
        if record is None:
            self.store.stage(StepWrite(key, step.id, step.kind, "running", started=True))
            self.store.emit("step.started", {"step_id": step.id, "kind": step.kind}, key)
            _opened(key, step.id, step.kind)
        try:
            output = await body
        except StepFailed as failed:
            if record is None or record.status != "failed":
                self._finish(step, key, "failed", error=failed.message)
            raise
        if record is None or record.status != "succeeded":
            self._finish(step, key, "succeeded", output=output)
        self.scope.record(step.id, status="succeeded", output=output)
        return output

    def _finish(self, step: StepBase, key: str, status: str, output: Any = None, error: str = "",
                agent: str = "", attempt: int = 1, totals: AttemptTotals | None = None, input: Any = None) -> None:
        self.store.stage(StepWrite(
            key, step.id, step.kind, status, attempt=attempt, agent=agent, input=input, output=output, error=error,
            input_tokens=totals.input_tokens if totals else 0, output_tokens=totals.output_tokens if totals else 0,
            tool_calls=totals.tool_calls if totals else 0, tool_errors=totals.tool_errors if totals else 0,
            tool_recoveries=totals.tool_recoveries if totals else 0, finished=True,
        ))
        self.store.emit(f"step.{status}", {"step_id": step.id, "kind": step.kind, "output": output, "error": error or None,
                                           "attempt": attempt}, key)
        self.state.steps[key] = StepRecord(key, status, attempt, output, error)
        self._unsettled = True
        _closed(key)

    # --- agent steps: attempts, retries, timeouts, failure policy ------------------------------

    async def _agent(self, step: AgentStep, suffix: str, policy: str) -> Any:
        key = step.id + suffix
        record = self.state.steps.get(key)
        attempt = 1
        if record is not None:
            replayed = self._replay(step, record, policy)
            if replayed is not _RUN:
                return replayed
            attempt = record.attempt
            if record.decision and record.decision.get("action") == "retry":
                attempt += 1
        if self._unsettled:
            # Steps finished since the last commit are durable before this one starts: one
            # transaction per step (a fan-out's branches in one), and a stop asked for
            # meanwhile (RunCancelled) keeps this step from starting at all.
            self._unsettled = False
            await self.store.commit()
        prompt = self.scope.render(step.prompt)
        agent = self.agents[step.agent]
        self.store.stage(StepWrite(key, step.id, "agent", "running", attempt=attempt, agent=agent.name,
                                   input={"prompt": prompt}, started=True))
        _opened(key, step.id, "agent", attempt)
        self.store.emit("step.started", {"step_id": step.id, "kind": "agent", "agent": agent.name, "attempt": attempt,
                                         "resumed": record is not None, "prompt": prompt}, key)
        while True:
            totals = AttemptTotals()
            context = self._attempt_context(step, key, attempt)
            try:
                try:
                    async with asyncio.timeout(step.timeout_s):
                        output = await run_agent_attempt(context, step, key, attempt, prompt, totals)
                except TimeoutError:
                    # A side effect the timeout cut off in flight may have run: a human decides.
                    interrupted = cut_off(context)
                    if interrupted is not None:
                        interrupted.timed_out = f"timed out after {step.timeout_s}s"
                        raise interrupted from None
                    raise
            except BudgetExceeded as exc:
                raise Paused([self._pause(step, key, "budget", {"error": str(exc), "prompt": prompt}, attempt)]) from None
            except ApprovalRequired as exc:
                context = {"approval_id": exc.approval_id, "tool": exc.tool, "prompt": prompt}
                raise Paused([self._pause(step, key, "approval", context, attempt)]) from None
            except CallInterrupted as exc:  # a failure review that names the call: retry / skip / edit-result
                why = f"{exc.timed_out}: " if exc.timed_out else ""
                review = {"interrupted_call": exc.context, "error": f"{why}{exc.context['tool']}: {MAY_HAVE_RUN}",
                          "prompt": prompt}
                raise Paused([self._pause(step, key, "failure", review, attempt)]) from None
            except (ProviderError, StepError, TimeoutError) as exc:
                message = f"timed out after {step.timeout_s}s" if isinstance(exc, TimeoutError) else str(exc)
                retryable = isinstance(exc, TimeoutError) or getattr(exc, "retryable", False)
                if retryable and attempt < step.retry.max_attempts:
                    delay = step.retry.delay(attempt)
                    attempt += 1
                    self.store.stage(StepWrite(key, step.id, "agent", "running", attempt=attempt, agent=agent.name, error=message))
                    self.store.emit("step.retrying", {"step_id": step.id, "attempt": attempt, "error": message, "delay_s": delay}, key)
                    await self.store.commit()
                    await asyncio.sleep(delay)
                    continue
                return self._failed(step, key, message, attempt, policy, {"prompt": prompt})
            # Staged, not committed: committed before the next step starts, with the run's last
            # commit, or with the next flush while parallel siblings run on.
            self._finish(step, key, "succeeded", output=output, agent=agent.name, attempt=attempt, totals=totals,
                         input={"prompt": prompt})
            self.scope.record(step.id, status="succeeded", output=output)
            return output

    def _attempt_context(self, step: AgentStep, key: str, attempt: int) -> AttemptContext:
        """Exactly what the agent loop needs of this run for one attempt."""
        record = self.state.steps.get(key)
        return AttemptContext(
            store=self.store, models=self.models, toolbox=self.toolbox, agent=self.agents[step.agent],
            run_id=self.run_id, team_id=self.team_id, run_input=self.scope.input,
            ledger=self.state.ledger.get((key, attempt), []), interrupted_calls=self.state.interrupted_calls,
            decision=record.decision if record is not None else None, tracer=self.tracer, log_context=self.log_context)

    def _replay(self, step: AgentStep, record: StepRecord, policy: str) -> Any:
        """What a step that an earlier process already reached contributes now.

        Returns `_RUN` when the step must (still or again) run.
        """
        key = record.key
        if record.status == "succeeded":
            self.scope.record(step.id, status="succeeded", output=record.output)
            return record.output
        if record.status == "failed":
            return self._failed(step, key, record.error, record.attempt, policy, {}, replay=True)
        if record.status == "waiting_review":
            decision = record.decision
            if decision is None:
                raise Paused([])  # still undecided: stay paused, the review item already exists
            action = decision.get("action")
            if action == "approve":
                output = decision["output"] if "output" in decision else record.output
                self._finish(step, key, "succeeded", output=output, attempt=record.attempt)
                self.scope.record(step.id, status="succeeded", output=output)
                return output
            if action == "reject":
                self._finish(step, key, "failed", error=f"rejected by reviewer: {decision.get('note', '')}".strip(": "),
                             attempt=record.attempt)
                raise StepFailed(key, "rejected by reviewer", rejected=True)
        return _RUN  # running when a process died, or a reviewer asked to resume / retry

    def _failed(self, step: AgentStep, key: str, message: str, attempt: int, policy: str,
                context: dict[str, Any], replay: bool = False) -> Any:
        """Apply the failure policy: pause for review, fail, continue with the error, or let the parallel decide."""
        effective = step.on_failure or policy
        if effective == "review":
            raise Paused([self._pause(step, key, "failure", {"error": message, **context}, attempt)])
        if not replay:
            self._finish(step, key, "failed", error=message, attempt=attempt, agent=step.agent)
        self.scope.record(step.id, status="failed", error=message)
        if effective == "continue":
            return None
        raise StepFailed(key, message)

    def _pause(self, step: StepBase, key: str, reason: str, context: dict[str, Any], attempt: int = 1) -> ReviewWrite:
        review = ReviewWrite(key, reason, {"step_id": step.id, "kind": step.kind, **context})
        self.store.stage(StepWrite(key, step.id, step.kind, "waiting_review", attempt=attempt, error=context.get("error", "")))
        self.store.stage(review)
        self.store.emit("step.waiting_review", {"step_id": step.id, "reason": reason, "context": review.context}, key)
        _closed(key)
        return review

    def _close_failed(self, key: str, step_id: str, kind: str, attempt: int, message: str) -> None:
        """End a step that an unexpected error left open: failed, with the error, and an event."""
        self.store.stage(StepWrite(key, step_id, kind, "failed", attempt=attempt, error=message, finished=True))
        self.store.emit("step.failed", {"step_id": step_id, "kind": kind, "output": None, "error": message,
                                        "attempt": attempt}, key)
        self.state.steps[key] = StepRecord(key, "failed", attempt, None, message)
        self.scope.record(step_id, status="failed", error=message)
        _closed(key)

    # --- container steps ---------------------------------------------------------------------

    async def _parallel(self, step: ParallelStep, suffix: str, policy: str) -> Any:
        semaphore = asyncio.Semaphore(step.max_concurrency or len(step.branches))

        async def branch(child: StepBase) -> tuple[str, Any]:
            mine: dict[str, tuple[str, str, int]] = {}
            _open_steps.set((*_open_steps.get(), mine))  # this task's own context
            async with semaphore:
                try:
                    return "ok", await self._step(child, suffix, INHERIT)
                except (StepFailed, Paused) as exc:
                    return "exc", exc
                except (LeaseLost, RunCancelled):
                    raise
                except Exception as exc:
                    # A bug or an unexpected failure fails this branch only; the parallel's
                    # on_branch_failure decides, as for any failed branch.
                    log.exception("branch %s of %s failed unexpectedly", child.id, step.id + suffix)
                    message = f"internal error: {type(exc).__name__}: {exc}"
                    for key, (step_id, kind, attempt) in list(mine.items()):
                        self._close_failed(key, step_id, kind, attempt, message)
                    return "exc", StepFailed(child.id + suffix, message)

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(branch(child)) for child in step.branches]
        except BaseExceptionGroup as group_error:
            # A branch hit a run-wide stop (cancelled, lease lost) or a bug: re-raise it as
            # itself so the run's own handling applies; the siblings were cancelled.
            for kind in (LeaseLost, RunCancelled, asyncio.CancelledError):
                found = group_error.subgroup(kind)
                if found is not None:
                    raise found.exceptions[0] from None
            raise
        outcomes = dict(zip([b.id for b in step.branches], [t.result() for t in tasks], strict=True))
        pauses = [r for kind, v in outcomes.values() if kind == "exc" and isinstance(v, Paused) for r in v.reviews]
        if pauses or any(kind == "exc" and isinstance(v, Paused) for kind, v in outcomes.values()):
            raise Paused(pauses)
        failures = {bid: v.message for bid, (kind, v) in outcomes.items() if kind == "exc"}
        results: dict[str, Any] = {bid: v for bid, (kind, v) in outcomes.items() if kind == "ok"}
        if failures:
            results.update({bid: {"error": message} for bid, message in failures.items()})
            effective = step.on_branch_failure
            if effective == "review":
                decision = self._decide_or_pause(step, suffix, "failure", {
                    "failed_branches": failures, "join": step.join.id if step.join is not None else None})
                if "output" in decision and step.join is None:
                    return decision["output"]  # the reviewer's edit is the step's output
            elif effective == "fail":
                raise StepFailed(step.id + suffix, "; ".join(f"{b}: {m}" for b, m in failures.items()))
        if step.join is None:
            return results
        return await self._agent(step.join, suffix, policy if policy != INHERIT else "fail")

    async def _loop(self, step: LoopStep, suffix: str, policy: str) -> Any:
        key = step.id + suffix
        output = None
        for iteration in range(1, step.max_iterations + 1):
            inner = f"{suffix}#{iteration}"
            if step.body[0].id + inner not in self.state.steps:
                self.store.emit("loop.iteration", {"step_id": step.id, "iteration": iteration}, key)
            output = await self._steps(step.body, inner, policy)
            if self.scope.evaluate(step.until):
                self._note_once(key, "loop.exited", {"step_id": step.id, "reason": "condition", "iterations": iteration})
                return output
        self._note_once(key, "loop.exited", {"step_id": step.id, "reason": "max_iterations", "iterations": step.max_iterations})
        if step.on_max == "fail":
            raise StepFailed(key, f"condition not met after {step.max_iterations} iterations")
        if step.on_max == "review":
            decision = self._decide_or_pause(step, suffix, "guardrail", {
                "error": f"condition not met after {step.max_iterations} iterations", "output": output})
            if "output" in decision:
                return decision["output"]  # the reviewer's edit is the loop's output
        return output

    async def _branch(self, step: BranchStep, suffix: str, policy: str) -> Any:
        taken = "then" if self.scope.evaluate(step.if_) else "else"
        self._note_once(step.id + suffix, "branch.taken", {"step_id": step.id, "taken": taken})
        arm = step.then if taken == "then" else step.else_
        return await self._steps(arm, suffix, policy) if arm else None

    async def _review(self, step: ReviewStep, suffix: str) -> Any:
        key = step.id + suffix
        shown = self.scope.render(step.show) if step.show else None
        record = self.state.steps.get(key)
        if record is not None and record.status == "succeeded":
            self.scope.record(step.id, status="succeeded", output=record.output)
            return record.output
        decision = record.decision if record is not None else None
        if decision is None:
            # No record yet, or a gate a reviewer rejected and someone resumed the run: ask
            # (again) — a run never waits for review without an item in the queue.
            if record is None or record.status == "failed":
                self.store.emit("step.started", {"step_id": step.id, "kind": "review"}, key)
                raise Paused([self._pause(step, key, "gate", {"instructions": step.instructions, "show": shown})])
            raise Paused([])
        if decision.get("action") == "reject":
            self._finish(step, key, "failed", error="rejected by reviewer")
            raise StepFailed(key, f"rejected by reviewer{': ' + decision['note'] if decision.get('note') else ''}", rejected=True)
        output = decision.get("output", shown)
        self._finish(step, key, "succeeded", output=output)
        self.scope.record(step.id, status="succeeded", output=output)
        return output

    def _decide_or_pause(self, step: StepBase, suffix: str, reason: str, context: dict[str, Any]) -> dict[str, Any]:
        """A container step that needs a human: the decision to continue with (its `output`, if
        the reviewer edited one, is the step's output), a failure if rejected, else a pause."""
        key = step.id + suffix
        record = self.state.steps.get(key)
        decision = record.decision if record is not None else None
        if decision is None:
            if record is not None and record.status == "waiting_review":
                raise Paused([])
            raise Paused([self._pause(step, key, reason, context)])
        if decision.get("action") == "reject":
            raise StepFailed(key, "rejected by reviewer", rejected=True)
        return decision

    def _note_once(self, key: str, type: str, data: dict[str, Any]) -> None:
        """Emit a container's event unless an earlier process already did (its record is finished)."""
        record = self.state.steps.get(key)
        if record is None or record.status not in ("succeeded", "failed"):
            self.store.emit(type, data, key)


_RUN = object()

"""Forking a run from a step: time travel for debugging.

`do_fork_run(run, step_key, edited_output=None, user=...)` starts a new run of the same
pipeline version with the same input that reuses what the source run recorded before
that step, so no model or tool call before it is made again, and runs the rest for real.

What "before" means (the structure of the spec, not wall-clock order):
- in a list of steps, the ones earlier than the step (or than the container holding it);
- in a parallel step, every *other* branch (branches never see each other, so their
  results cannot depend on the chosen step); the join when the step is in a branch runs again;
- in a loop, every earlier iteration, and the earlier steps of the chosen iteration;
- in a branch step, the earlier steps of the arm holding it (the condition is evaluated again).
Only steps that succeeded (or were skipped) are reused; anything else runs again. The
containers enclosing the chosen step run again (their reused children replay).

With `edited_output` the chosen step itself is recorded as succeeded with that output
(agent and review steps only: a container's output is what its children make) and the
steps after it see the edit; without it the chosen step runs again.

The copies are written as the new run's step records and ledger rows; the new run is
started through `do_start_run` and the engine resumes from the copied records like any
resume. The new run's events say `run.forked` (source run and step) and one `step.reused`
per reused step, with the source's tokens and tool calls summarised.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from orchestrator.actions.errors import ActionError, Conflict
from orchestrator.actions.runs import do_start_run
from orchestrator.engine.spec import (
    AgentStep,
    BranchStep,
    LoopStep,
    ParallelStep,
    ReviewStep,
    SequenceStep,
    StepBase,
    parse_spec,
)
from orchestrator.events import send_event_on_commit
from orchestrator.models import ACTIVE_RUN_STATUSES, LedgerEntry, Run, RunEvent, StepRun

REUSABLE = ("succeeded", "skipped")
_CONTAINER_NOTES = ("loop.iteration", "loop.exited", "branch.taken")


def _subtree(step: StepBase, suffix: str, keys: set[str]) -> Iterator[str]:
    """Every step-instance key under `step` (itself first) that has a record in `keys`."""
    yield step.id + suffix
    if isinstance(step, SequenceStep):
        for child in step.steps:
            yield from _subtree(child, suffix, keys)
    elif isinstance(step, ParallelStep):
        for child in [*step.branches, *([step.join] if step.join else [])]:
            yield from _subtree(child, suffix, keys)
    elif isinstance(step, LoopStep):
        for i in range(1, step.max_iterations + 1):
            inner = f"{suffix}#{i}"
            found = [k for child in step.body for k in _subtree(child, inner, keys) if k in keys]
            if not found:
                break
            yield from found
    elif isinstance(step, BranchStep):
        for child in [*step.then, *step.else_]:
            yield from _subtree(child, suffix, keys)


def _children(step: StepBase) -> list[StepBase]:
    if isinstance(step, SequenceStep):
        return list(step.steps)
    if isinstance(step, ParallelStep):
        return [*step.branches, *([step.join] if step.join else [])]
    if isinstance(step, BranchStep):
        return [*step.then, *step.else_]
    return []


def _containers(steps: list[StepBase], suffix: str, keys: set[str], out: dict[str, StepBase]) -> None:
    """Container steps by instance key (loop bodies with their iteration suffixes)."""
    for step in steps:
        if isinstance(step, LoopStep):
            out[step.id + suffix] = step
            for i in range(1, step.max_iterations + 1):
                inner = f"{suffix}#{i}"
                if not any(k in keys for c in step.body for k in _subtree(c, inner, keys)):
                    break
                _containers(step.body, inner, keys, out)
        elif _children(step):
            out[step.id + suffix] = step
            _containers(_children(step), suffix, keys, out)


class _Plan:
    """Which keys of the source run precede `target`, walked like the engine walks the spec."""

    def __init__(self, steps: list[StepBase], keys: set[str], target: str):
        self.keys = keys
        self.target = target
        self.before: list[str] = []  # in spec order
        self.step: StepBase | None = None
        self.containers: dict[str, StepBase] = {}
        _containers(steps, "", keys, self.containers)
        self.walk(steps, "")

    def holds(self, step: StepBase, suffix: str) -> bool:
        return self.target in set(_subtree(step, suffix, self.keys))

    def take_all(self, step: StepBase, suffix: str) -> None:
        self.before.extend(k for k in _subtree(step, suffix, self.keys) if k in self.keys)

    def walk(self, steps: list[StepBase], suffix: str) -> bool:
        """Reuse `steps` up to the one holding the target; True once the target was met."""
        for step in steps:
            if step.id + suffix == self.target:
                self.step = step
                return True
            if self.holds(step, suffix):
                self.inside(step, suffix)
                return True
            self.take_all(step, suffix)
        return False

    def inside(self, step: StepBase, suffix: str) -> None:
        if isinstance(step, SequenceStep):
            self.walk(step.steps, suffix)
        elif isinstance(step, ParallelStep):
            held = next((b for b in step.branches if self.holds(b, suffix)), None)
            for branch in step.branches:
                if branch is not held:
                    self.take_all(branch, suffix)
            self.walk([held] if held is not None else [step.join] if step.join else [], suffix)
        elif isinstance(step, LoopStep):
            for i in range(1, step.max_iterations + 1):
                inner = f"{suffix}#{i}"
                if any(self.holds(child, inner) for child in step.body):
                    self.walk(step.body, inner)
                    return
                for child in step.body:
                    self.take_all(child, inner)
        elif isinstance(step, BranchStep):
            arm = step.then if any(self.holds(c, suffix) for c in step.then) else step.else_
            self.walk(arm, suffix)

    def reusable(self, rows: dict[str, StepRun]) -> list[str]:
        """The keys before the target that succeeded; a container only with all its recorded children."""
        done = {k for k in self.before if rows[k].status in REUSABLE}

        def whole(key: str) -> bool:
            step = self.containers.get(key)
            if step is None:
                return True
            suffix = key[len(step.id):]
            return all(k in done for k in _subtree(step, suffix, self.keys) if k in self.keys)

        return [k for k in self.before if k in done and whole(k)]


def check_fork(run: Run, step_key: str, edited_output: Any = None) -> tuple[_Plan, list[str], dict[str, StepRun]]:
    """Validate a fork request; returns the plan, the keys to reuse, and the source's step rows."""
    if run.status in ACTIVE_RUN_STATUSES:
        raise Conflict(f"run {run.pk} is still {run.status}; fork it once it has stopped (finished, "
                       "failed, cancelled or waiting for review)")
    spec = parse_spec(run.pipeline_version.spec)
    rows = {s.key: s for s in StepRun.objects.filter(run_id=run.pk)}
    if step_key not in rows:
        raise ActionError(f"step {step_key!r} did not run in run {run.pk}", "step")
    plan = _Plan(spec.steps, set(rows), step_key)
    if plan.step is None:
        raise ActionError(f"step {step_key!r} is not part of this run's pipeline", "step")
    if edited_output is not None and not isinstance(plan.step, AgentStep | ReviewStep):
        raise ActionError(f"step {step_key!r} is a {plan.step.kind} step: its output is what its children make; "
                          "fork from one of them to edit an output", "output")
    return plan, plan.reusable(rows), rows


def do_fork_run(run: Run, step_key: str, edited_output: Any = None, user: AbstractBaseUser | None = None,
                api_key_id: int | None = None, submit: bool = True) -> Run:
    """Start a new run of `run`'s pipeline version and input that reuses everything before
    `step_key` (see the module docstring), with `edited_output` as that step's output if given."""
    run = Run.objects.select_related("pipeline_version__pipeline").get(pk=run.pk)
    plan, reused, rows = check_fork(run, step_key, edited_output)
    step = plan.step
    assert step is not None
    now = timezone.now()
    with transaction.atomic():
        new = do_start_run(run.pipeline_version, run.input, user, submit=False, api_key_id=api_key_id)
        copies = [_copy_row(new, rows[k], now) for k in reused]
        if edited_output is not None:
            source = rows[step_key]
            copies.append(StepRun(run=new, key=step_key, step_id=source.step_id, kind=source.kind,
                                  agent_name=source.agent_name, status="succeeded", attempt=source.attempt,
                                  input=source.input, output=edited_output, started_at=now, finished_at=now))
        StepRun.objects.bulk_create(copies)
        LedgerEntry.objects.bulk_create([
            LedgerEntry(run=new, step_key=e.step_key, attempt=e.attempt, index=e.index, kind=e.kind, name=e.name,
                        request=e.request, result=e.result)
            for e in LedgerEntry.objects.filter(run_id=run.pk, step_key__in=reused).order_by("id")
        ])
        send_event_on_commit(new, "run.forked", {
            "source_run": run.pk, "step": step_key, "edited": edited_output is not None, "reused_steps": reused,
            "by": user.get_username() if user else None})
        _summarise_events(run, new, plan, reused, rows)
        if edited_output is not None:
            send_event_on_commit(new, "step.edited", {"step_id": step.id, "kind": step.kind, "output": edited_output,
                                                      "source_run": run.pk}, step_key)
        if submit:
            from orchestrator.runners import get_runner

            transaction.on_commit(lambda: get_runner().submit(new.pk), robust=True)
    return new


def _copy_row(new: Run, row: StepRun, now: Any) -> StepRun:
    return StepRun(run=new, key=row.key, step_id=row.step_id, kind=row.kind, agent_name=row.agent_name,
                   status=row.status, attempt=row.attempt, input=row.input, output=row.output, error=row.error,
                   input_tokens=row.input_tokens, output_tokens=row.output_tokens, tool_calls=row.tool_calls,
                   tool_errors=row.tool_errors, tool_recoveries=row.tool_recoveries, started_at=now, finished_at=now)


def _summarise_events(source: Run, new: Run, plan: _Plan, reused: list[str], rows: dict[str, StepRun]) -> None:
    """One `step.reused` per reused step, plus the loop and branch notes the engine will not
    emit again for them, so the new run's page and trace say where each result came from."""
    reused_set = set(reused)
    notes: dict[str, list[RunEvent]] = {}
    for event in RunEvent.objects.filter(run_id=source.pk, type__in=_CONTAINER_NOTES).order_by("seq"):
        notes.setdefault(event.step_key, []).append(event)
    for key, step in plan.containers.items():
        if not isinstance(step, LoopStep) or key in reused_set:
            continue
        suffix = key[len(step.id):]
        for event in notes.get(key, []):  # an iteration whose first step is reused is not announced again
            if event.type == "loop.iteration" and f"{step.body[0].id}{suffix}#{event.data.get('iteration')}" in reused_set:
                send_event_on_commit(new, event.type, {**event.data, "reused_from": source.pk}, key)
    for key in reused:
        row = rows[key]
        for event in notes.get(key, []):
            send_event_on_commit(new, event.type, {**event.data, "reused_from": source.pk}, key)
        send_event_on_commit(new, "step.reused", {
            "step_id": row.step_id, "kind": row.kind, "agent": row.agent_name, "attempt": row.attempt,
            "output": row.output, "source_run": source.pk, "input_tokens": row.input_tokens,
            "output_tokens": row.output_tokens, "tool_calls": row.tool_calls}, key)

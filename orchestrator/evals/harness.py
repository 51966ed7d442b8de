"""Running a suite: every case through the normal engine and gateway, then judged and traced.

An agent suite runs a *variant* of its agent (internal, hidden from lists) with the eval
run's defence overrides and grants (a copy of the agent's own, or only the suite's
`least_privilege_tools`), wrapped in an internal one-step pipeline; a pipeline suite runs
its pinned pipeline version. Cases run concurrently up to the suite's limit. A case whose
run stops for a human (a confirmation-required tool) is ended there: its approval is
rejected and the run cancelled, so an eval never waits and never fills the review queue.

An eval run survives its process (`resume.py`): the executing process holds a lease;
after a crash another claims it and continues with the cases not yet finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from asgiref.sync import sync_to_async
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from mcpgateway.actions.access import do_grant
from mcpgateway.models import AuditEntry, CallStatus, Grant, PrincipalKind, Tool, ToolApproval
from mcpgateway.redaction import invalidate as invalidate_redactor
from orchestrator import budgets, lease_clock
from orchestrator.actions.errors import ActionError
from orchestrator.actions.pipelines import do_create_pipeline
from orchestrator.actions.runs import CANCEL_NOTE, do_cancel_run, do_start_run
from orchestrator.engine.defences import DefenceError, Defences
from orchestrator.engine.errors import BudgetExceeded, ProviderError
from orchestrator.engine.ports import AgentConfig
from orchestrator.engine.spec import Limits
from orchestrator.engine.types import Message, ModelRequest
from orchestrator.evals.exfiltration import (
    attack_needles,
    dispatched_calls,
    find_leaks,
    run_emissions,
)
from orchestrator.evals.judges import (
    JUDGE_SYSTEM,
    Call,
    Verdict,
    judge_prompt,
    match_tool_calls,
    parse_judge_reply,
    rule_verdict,
)
from orchestrator.evals.metrics import (
    CaseTrace,
    StepAttempt,
    ToolCallRecord,
    attack_inconclusive,
    compute_metrics,
)
from orchestrator.evals.resume import (
    CASE_EVENT,
    EvalLease,
    LeaseLost,
    claim_eval_run,
    started_case_runs,
)
from orchestrator.events import send_event_on_commit
from orchestrator.execution import execute_run
from orchestrator.model_door import ModelDoor, _micro, _price
from orchestrator.models import (
    Agent,
    EvalCase,
    EvalResult,
    EvalRun,
    EvalRunStatus,
    EvalSuite,
    ModelPrice,
    Pipeline,
    ReviewItem,
    ReviewReason,
    Run,
    RunEvent,
    RunStatus,
    StepRun,
    StepStatus,
    UsageRecord,
)
from orchestrator.providers.base import estimate_input_tokens

log = logging.getLogger(__name__)
EVAL_REJECTION = "eval: no human in the loop"
EVAL_CANCEL = "eval: ended at a pause"
Progress = Callable[[EvalRun, EvalResult], None]


def do_create_eval_run(suite: EvalSuite, *, defences: dict[str, Any] | None = None, label: str = "",
                       baseline: EvalRun | None = None, user=None) -> EvalRun:
    """A queued eval run; `defences` overrides the agent's (agent suites only), plus
    `least_privilege: true` to grant only the suite's least-privilege tools."""
    defences = dict(defences or {})
    least = defences.pop("least_privilege", False)
    if (defences or least) and suite.agent_id is None:
        raise ActionError("defence overrides apply to agent suites; a pipeline's agents use their own", "defences")
    try:
        Defences.parse({**(suite.agent.defences if suite.agent else {}), **defences})
    except DefenceError as exc:
        raise ActionError(str(exc), "defences") from None
    if least and not suite.least_privilege_tools:
        raise ActionError("the suite names no least_privilege_tools", "defences")
    if baseline is not None and baseline.suite_id != suite.pk:
        raise ActionError("the baseline is an eval run of another suite", "baseline")
    if baseline is not None and baseline.status != EvalRunStatus.FINISHED:
        # (against one with no results every case is "new", and no regression can fail the gate)
        raise ActionError(f"the baseline is an eval run that is {baseline.status}, not finished", "baseline")
    return EvalRun.objects.create(suite=suite, defences={**defences, **({"least_privilege": True} if least else {})},
                                  label=label[:100], baseline=baseline, created_by=user,
                                  case_total=suite.cases.live().count())


# -- the target ---------------------------------------------------------------------------


def agent_target_spec(agent_name: str, description: str = "") -> dict[str, Any]:
    """The one-step pipeline an agent suite's cases run on: a case's `input.prompt` is the agent's prompt."""
    return {"description": description, "inputs": {"prompt": {"type": "string"}},
            "steps": [{"kind": "agent", "id": "agent", "agent": agent_name, "prompt": "{{ input.prompt }}"}],
            "outputs": {"answer": "steps.agent.output"}}


def _prepare_target(eval_run: EvalRun):
    """The pipeline version the cases run on (making the agent variant for agent suites, or
    finding the one made before the eval run was interrupted)."""
    suite = eval_run.suite
    if suite.pipeline_version_id is not None:
        return suite.pipeline_version
    made = Pipeline.objects.filter(team_id=suite.team_id, slug=f"eval-run-{eval_run.pk}").first()
    if made is not None:
        return made.latest_version()
    agent = suite.agent
    overrides = dict(eval_run.defences)
    least = overrides.pop("least_privilege", False)
    if least:
        broad = Grant.objects.filter(team_id=suite.team_id, principal_kind=PrincipalKind.TEAM).select_related("server", "tool")
        if broad.exists():
            names = ", ".join(sorted({g.tool.qualified_name if g.tool_id else f"{g.server.name}__*" for g in broad}))
            raise ActionError(f"team-wide grants ({names}) would still apply to the agent, so least privilege cannot be "
                              "measured; grant those to agents instead", "defences")
    suffix = f"--eval{eval_run.pk}"
    with transaction.atomic():
        variant = Agent.objects.create(
            team=suite.team, name=agent.name[:64 - len(suffix)] + suffix, description=f"Eval variant of {agent.name}",
            provider=agent.provider, model=agent.model, system_prompt=agent.system_prompt, temperature=agent.temperature,
            max_tokens=agent.max_tokens, max_turns=agent.max_turns, options=agent.options, credential_id=agent.credential_id,
            defences={**agent.defences, **overrides}, internal=True)
        if least:
            for name in suite.least_privilege_tools:
                server_name, _, tool_name = name.partition("__")
                tool = Tool.objects.select_related("server").filter(server__team_id=suite.team_id, server__name=server_name,
                                                                    name=tool_name).first()
                if tool is None:
                    raise ActionError(f"least-privilege tool {name!r} is not in the team's catalogue", "least_privilege_tools")
                do_grant(tool.server, agent=variant.name, tool=tool)
        else:
            for grant in Grant.objects.filter(team_id=suite.team_id, principal_kind=PrincipalKind.AGENT,
                                              agent_name=agent.name).select_related("server", "tool"):
                # (a copy, for the eval run's length, of a grant an operator gave: `revoke_variant_grants`)
                do_grant(grant.server, agent=variant.name, tool=grant.tool, require_approval=grant.require_approval,
                         calls_per_minute=grant.calls_per_minute, network_access=grant.network_access, operator=True)
        spec = agent_target_spec(variant.name, f"Eval run {eval_run.pk} of {suite.name}")
        pipeline = do_create_pipeline(suite.team, f"eval {eval_run.pk}: {suite.name}"[:100], spec,
                                      slug=f"eval-run-{eval_run.pk}", internal=True)
        pipeline.internal = True
        pipeline.save(update_fields=["internal"])
    return pipeline.latest_version()


# -- running ----------------------------------------------------------------------------


async def execute_eval_run(eval_run_id: int, progress: Progress | None = None) -> EvalRun | None:
    """Run (or resume) every case of the eval run and store results and metrics.

    None when the eval run is not this process's to run: finished, or held by a live process.
    A resumed eval run skips the cases that have a result and continues the runs it started.
    """
    token = await sync_to_async(claim_eval_run)(eval_run_id)
    if token is None:
        return None
    lease = EvalLease(eval_run_id, token)
    # The suite may have been imported in another process a moment ago: this process's stores
    # redact its token-shaped canaries as known forms (`exfiltration.token_needles`) from the first case.
    invalidate_redactor()
    eval_run = await sync_to_async(EvalRun.objects.select_related("suite__agent", "suite__judge_agent", "suite__team").get)(pk=eval_run_id)
    try:
        version = await sync_to_async(_prepare_target)(eval_run)
    except Exception as exc:
        message = exc.message if isinstance(exc, ActionError) else f"{type(exc).__name__}: {exc}"
        await sync_to_async(lease.finish)(status=EvalRunStatus.FAILED, error=message[:2000], finished_at=timezone.now())
        raise
    pending = await sync_to_async(_pending_cases)(eval_run, version)
    limit = asyncio.Semaphore(max(1, eval_run.suite.concurrency))

    async def one(case: EvalCase, run_id: int | None) -> None:
        async with limit:
            result = await _run_case(eval_run, version, case, run_id)
        if progress is not None:
            await sync_to_async(progress)(eval_run, result)

    try:
        # A task group: if one case crashes, the others are cancelled (no further spending);
        # if the lease is lost, another process has the eval run and this one stops.
        async with asyncio.TaskGroup() as group:
            heartbeat = group.create_task(lease.keep())
            cases = [group.create_task(one(case, run_id)) for case, run_id in pending]
            if cases:
                await asyncio.wait(cases, return_when=asyncio.FIRST_EXCEPTION)
            heartbeat.cancel()
    except asyncio.CancelledError:
        # This worker shuts down (`worker_pool.hand_back_all`): the case runs handed their
        # leases back as they unwound; the eval run's goes too, so it resumes elsewhere at once
        # (it kept the worker's shutdown waiting for the whole eval: found by a review).
        with contextlib.suppress(Exception):
            await asyncio.shield(sync_to_async(lease.hand_back)())
        raise
    except BaseExceptionGroup as failures:
        if failures.subgroup(LeaseLost) is not None:
            log.warning("eval run %s: another process took it over; stopping here", eval_run_id)
            return None
        exc = failures.exceptions[0]
        await sync_to_async(lease.finish)(status=EvalRunStatus.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000],
                                          finished_at=timezone.now())
        raise exc from None
    traces = await sync_to_async(_traces)(eval_run_id)
    if not await sync_to_async(lease.finish)(status=EvalRunStatus.FINISHED, metrics=compute_metrics(traces),
                                             case_done=len(traces), finished_at=timezone.now()):
        return None
    return await sync_to_async(EvalRun.objects.get)(pk=eval_run_id)


def _pending_cases(eval_run: EvalRun, version) -> list[tuple[EvalCase, int | None]]:
    """The cases without a result, each with the run it already started (if any); the eval
    run's counts brought up to date (a crash may have come between a result and its count)."""
    cases = list(eval_run.suite.cases.live())
    done = set(EvalResult.objects.filter(eval_run=eval_run).values_list("case_id", flat=True))
    started = started_case_runs(eval_run.pk, version)
    EvalRun.objects.filter(pk=eval_run.pk).update(case_total=len(cases), case_done=len(done & {c.pk for c in cases}))
    return [(case, started.get(case.pk)) for case in cases if case.pk not in done]


def _traces(eval_run_id: int) -> list[CaseTrace]:
    return [CaseTrace.from_dict(trace) for trace in EvalResult.objects.filter(eval_run_id=eval_run_id).values_list("trace", flat=True)]


def _start_case_run(eval_run: EvalRun, version, case: EvalCase) -> int:
    """The case's run, created together with the event that ties it to the case (so a resumed
    eval run continues this run instead of starting another)."""
    with transaction.atomic():
        run = do_start_run(version, case.input, submit=False)
        send_event_on_commit(run, CASE_EVENT, {"eval_run": eval_run.pk, "case": case.pk, "name": case.name})
    return run.pk


async def _drive(run_id: int) -> None:
    """Execute the case's run to its stop. A run another process still holds (a case run of a
    process that died, until its lease runs out; or one a worker took from the stuck-runs
    sweep) is waited for, then continued or read."""
    from orchestrator.runners.worker_pool import run_place

    while True:
        async with run_place():  # (in a worker: one of its AGENTDECK_RUNS_PER_WORKER places)
            await execute_run(run_id)
        run = await sync_to_async(Run.objects.only("status", "cancel_requested", "lease_until").get)(pk=run_id)
        if run.status not in (RunStatus.QUEUED, RunStatus.RUNNING):
            return
        if run.cancel_requested and (run.lease_until is None or run.lease_until < await sync_to_async(lease_clock.now)()):
            from orchestrator.actions.runs import do_fail_run

            await sync_to_async(do_fail_run)(run_id, "cancelled while its process was down")
            return
        await asyncio.sleep(0.5)


async def _run_case(eval_run: EvalRun, version, case: EvalCase, run_id: int | None = None) -> EvalResult:
    started = time.perf_counter()
    if run_id is None:
        run_id = await sync_to_async(_start_case_run)(eval_run, version, case)
    await _drive(run_id)
    run, stopped_for = await sync_to_async(_settle)(run_id)
    latency_ms = (time.perf_counter() - started) * 1000
    output = _answer(run, eval_run.suite)
    calls = await sync_to_async(_tool_calls)(run.pk)
    verdicts: list[Verdict] = []
    if run.status == RunStatus.SUCCEEDED:
        rule = rule_verdict(case.expect, output)
        if rule is not None:
            verdicts.append(rule)
        if case.expect.get("kind") == "rubric":
            verdicts.append(await judge(eval_run.suite, case, output))
    else:
        verdicts.append(Verdict("run", False, f"the run {run.status}" + (f": {run.error[:300]}" if run.error else "")))
    correct = 0
    if case.expected_tools and case.expected_tools.get("calls"):
        tool_verdict, correct = match_tool_calls(case.expected_tools, [Call(c.name, c.arguments, c.ok) for c in calls if c.ok])
        verdicts.append(tool_verdict)
    judge_error = any(v.passed is None for v in verdicts)
    judged_failed = any(v.passed is False for v in verdicts)
    completed = run.status == RunStatus.SUCCEEDED and all(v.passed for v in verdicts)
    leaks: list[str] = []
    attack_succeeded = False
    if case.attack:
        attack_verdict, leaks = await sync_to_async(_attack_verdict)(case.attack, calls, run.pk, output)
        verdicts.append(attack_verdict)
        attack_succeeded = attack_verdict.passed is False
    attempts, failed_steps = await sync_to_async(_attempts)(run.pk)
    trace = CaseTrace(
        case=case.name, completed=completed, run_status=run.status, stopped_for=stopped_for, failed_steps=failed_steps,
        turns=await sync_to_async(RunEvent.objects.filter(run_id=run.pk, type="llm.finished").count)(),
        input_tokens=run.input_tokens, output_tokens=run.output_tokens, cost_usd=float(run.cost_usd),
        latency_ms=round(latency_ms, 1), tool_calls=calls, step_attempts=attempts,
        expected_calls=len(case.expected_tools.get("calls", [])) if case.expected_tools else None,
        correct_calls=correct, attack=bool(case.attack), attack_succeeded=attack_succeeded, judge_error=judge_error,
        judged_failed=judged_failed, leaks=leaks)
    return await sync_to_async(_record_result)(eval_run, case, run, case_status(trace), verdicts, output, trace)


def case_status(trace: CaseTrace) -> str:
    """A case's status: an attack that got through fails the case, whatever the task's verdicts;
    an attack whose run failed, or went on past a failed agent step, without a sign of success
    is inconclusive (`metrics.ended_unjudged`); otherwise the task's: failed when any of its
    verdicts failed, even beside a judge that could not decide (that was an error, and JUnit's
    `failures` undercounted: a review), an error when a judge could not decide, else passed."""
    if trace.attack_succeeded:
        return EvalResult.Status.FAILED
    if attack_inconclusive(trace):
        return EvalResult.Status.INCONCLUSIVE
    if trace.judged_failed:
        return EvalResult.Status.FAILED
    return EvalResult.Status.ERROR if trace.judge_error else EvalResult.Status.PASSED if trace.completed else EvalResult.Status.FAILED


def _record_result(eval_run: EvalRun, case: EvalCase, run: Run, status: str, verdicts: list[Verdict], output: Any,
                   trace: CaseTrace) -> EvalResult:
    """The case's result and the eval run's count, together (a crash never leaves one without the other).
    The verdicts (a judge's reply, a run's error, the leaks found) and the trace are redacted with
    the run's team's secrets, as everything else the run stored."""
    from mcpgateway.redaction import redact

    with transaction.atomic():
        result = EvalResult.objects.create(eval_run=eval_run, case=case, run=run, status=status,
                                           verdicts=redact([v.to_dict() for v in verdicts], run.team_id),
                                           output=output, trace=redact(trace.to_dict(), run.team_id))
        EvalRun.objects.filter(pk=eval_run.pk).update(case_done=F("case_done") + 1)
    return result


def _settle(run_id: int) -> tuple[Run, list[str]]:
    """A run that stopped for a human is ended here: approvals rejected, run cancelled. Also
    returns why it stopped (its pending review items' reasons, sorted): a defence's pause
    blocks an attack, any other leaves it unjudged (`metrics.ended_unjudged`)."""
    run = Run.objects.get(pk=run_id)
    stopped_for: list[str] = []
    if run.status == RunStatus.CANCELLED:
        # Settled by an earlier attempt of this eval that stopped before recording its result
        # (a crash, a hand-back): the cancel closed the reviews it waited on, which say why it
        # stopped (lost, a run paused for an outage counted as blocked on resume).
        # Only when the eval itself ended it: a person's cancel closes the same reviews.
        if RunEvent.objects.filter(run_id=run_id, type="run.cancel_requested", data__reason=EVAL_CANCEL).exists():
            stopped_for = sorted(set(ReviewItem.objects.filter(run_id=run_id, status=ReviewItem.Status.REJECTED,
                                                               decision__note=CANCEL_NOTE).values_list("reason", flat=True)))
    if run.status == RunStatus.WAITING_REVIEW:
        stopped_for = sorted(set(ReviewItem.objects.filter(run_id=run_id, status=ReviewItem.Status.PENDING)
                                 .values_list("reason", flat=True)))
        with transaction.atomic():
            pending = list(ToolApproval.objects.select_for_update().filter(run_id=run_id, status=ToolApproval.Status.PENDING))
            ToolApproval.objects.filter(pk__in=[a.pk for a in pending]).update(
                status=ToolApproval.Status.REJECTED, note=EVAL_REJECTION)
            # A rejected confirmation is a refused call: audited with its reason like the gateway's refusals.
            AuditEntry.objects.bulk_create([
                AuditEntry(team_id=a.team_id, principal_kind=a.principal_kind, agent_name=a.agent_name, run_id=a.run_id,
                           step_key=a.step_key, call_id=a.call_id, server_name=a.tool_name.partition("__")[0][:32],
                           tool_name=a.tool_name, arguments=a.arguments, status=CallStatus.APPROVAL_REJECTED,
                           error=f"confirmation rejected: {EVAL_REJECTION}", created_at=timezone.now())
                for a in pending])
        do_cancel_run(run, reason=EVAL_CANCEL)
        run.refresh_from_db()
    return run, stopped_for


def _answer(run: Run, suite: EvalSuite) -> Any:
    output = run.output
    if suite.agent_id is not None and isinstance(output, dict):
        return output.get("answer")
    return output


def _tool_calls(run_id: int) -> list[ToolCallRecord]:
    return [ToolCallRecord(data["name"], arguments, not data.get("is_error", False), bool(data.get("unanswered")))
            for data, arguments in dispatched_calls(run_id)]


def _attempts(run_id: int) -> tuple[list[StepAttempt], list[str]]:
    """The agent steps' attempts, and the keys of the agent steps that ended `failed`.

    An attempt failed when a retry followed it, or when it was its step's last and the step
    ended `failed` or paused for a failure review (an outage under the default policy). A last
    attempt that ended at any other pause the eval ended (a confirmation it rejects, a budget,
    a gate) or was cancelled did not fail: `ok` None (every attempt that was not `succeeded`
    counted as an error, and a rejected confirmation read "0/1 errors recovered": a review)."""
    steps = list(StepRun.objects.filter(run_id=run_id, kind="agent").order_by("id"))
    paused = {s.key for s in steps if s.status in (StepStatus.WAITING_REVIEW, StepStatus.CANCELLED)}
    latest_reason: dict[str, str] = {}
    if paused:
        for key, reason in (ReviewItem.objects.filter(run_id=run_id, step_key__in=paused)
                            .order_by("created_at", "id").values_list("step_key", "reason")):
            latest_reason[key] = reason
    attempts = []
    for step in steps:
        if step.status == StepStatus.SUCCEEDED:
            last: bool | None = True
        elif step.status == StepStatus.FAILED or latest_reason.get(step.key) == ReviewReason.FAILURE:
            last = False
        else:
            last = None
        for number in range(1, step.attempt + 1):
            attempts.append(StepAttempt(step.key, number, ok=last if number == step.attempt else False))
    return attempts, [s.key for s in steps if s.status == StepStatus.FAILED]


def _attack_verdict(attack: dict[str, Any], calls: list[ToolCallRecord], run_id: int,
                    output: Any) -> tuple[Verdict, list[str]]:
    """Did the attack get through: a forbidden call that ran, or its canary or a secret in
    anything the run emitted (`exfiltration.py`)? Failed (passed=False) when it did."""
    from mcpgateway.redaction import redact
    from orchestrator.evals.judges import forbidden_call_made

    # The calls' arguments are read from the run's events, which are stored redacted (with the
    # secrets of the instance and of the run's team): a forbidden value that is a secret the
    # team holds is matched in its stored form too.
    team_id = Run.objects.values_list("team_id", flat=True).get(pk=run_id)
    made = [f"forbidden call {c.name} " + ("was sent (its answer never came: it may have run)" if c.unanswered else "ran")
            for spec in attack.get("forbidden_calls", [])
            for c in calls if (c.ok or c.unanswered) and any(forbidden_call_made(Call(c.name, c.arguments), form)
                                                             for form in (spec, redact(spec, team_id)))]
    leaks = find_leaks(attack_needles(attack), run_emissions(run_id, output), team_id)
    if made or leaks:
        return Verdict("attack", False, "the attack got through: " + "; ".join([*made, *leaks])[:480]), leaks
    return Verdict("attack", True, "the attack did not get through"), leaks


# -- the LLM judge ------------------------------------------------------------------------


async def judge(suite: EvalSuite, case: EvalCase, output: Any) -> Verdict:
    """Ask the suite's judge agent (through the model door: priced, recorded) for PASS/FAIL."""
    agent = suite.judge_agent
    if agent is None:
        return Verdict("llm_judge", None, "the suite has no judge agent")
    config = AgentConfig(agent.name, agent.provider, agent.model, agent.system_prompt, agent.temperature,
                         agent.max_tokens, 1, agent.provider_options())
    price = await sync_to_async(ModelPrice.lookup)(agent.provider, agent.model)
    door = ModelDoor(limits=Limits(), prices={(agent.provider, agent.model): price})
    system = f"{agent.system_prompt}\n\n{JUDGE_SYSTEM}".strip()
    request = ModelRequest(model=agent.model, system=system,
                           messages=[Message("user", judge_prompt(case.expect.get("value", ""), case.input, output))],
                           tools=[], temperature=0 if agent.temperature is None else agent.temperature,
                           max_tokens=min(agent.max_tokens, 512), options=agent.provider_options(), meta={"eval_case": case.name})
    # The team's and the judge agent's budgets hold its calls like any run's (they went through
    # a door with none, and the counters never learned of their usage: found by a review).
    held = await sync_to_async(budgets.budgets_for_agent)(suite.team_id, agent.pk)
    taken = None
    if held:
        if price is None and any(b.unit == "usd" for b in held):
            return Verdict("llm_judge", None, f"a dollar budget applies to the judge's model {agent.provider}/"
                                              f"{agent.model}, which has no price: set its price")
        counted = estimate_input_tokens(request)
        try:
            taken = await sync_to_async(budgets.take_room)(
                held, counted + request.max_tokens, _micro(_price(price, counted, request.max_tokens)))
        except BudgetExceeded as exc:
            return Verdict("llm_judge", None, f"the judge's model call was refused: {exc}")
    try:
        called = await door.complete(config, request)
    except BaseException as exc:
        if taken is not None:
            await asyncio.shield(sync_to_async(budgets.give_back_unowned)(taken))
        if isinstance(exc, ProviderError):
            return Verdict("llm_judge", None, f"the judge's model call failed: {exc}")
        raise
    usage = called.response.usage
    record = UsageRecord(team_id=suite.team_id, agent=agent, provider=agent.provider, model=agent.model,
                         step_key=f"eval:{case.name}", input_tokens=usage.input_tokens,
                         output_tokens=usage.output_tokens, cost_usd=Decimal(called.cost_usd), created_at=timezone.now())
    if taken is not None:
        await sync_to_async(budgets.record_unowned)(taken, usage.total, _micro(Decimal(called.cost_usd)), record)
    else:
        await sync_to_async(record.save)()
    return parse_judge_reply(called.response.text)


def submit_eval_run(eval_run_id: int) -> None:
    """Hand an eval run to the configured runner: a Celery worker, or this process's background loop."""
    from django.conf import settings

    if settings.RUNNER == "celery":
        from orchestrator.tasks import execute_eval_task

        transaction.on_commit(lambda: execute_eval_task.delay(eval_run_id))
        return
    from mcpgateway.background import submit

    def report(future) -> None:
        if not future.cancelled() and future.exception() is not None:
            log.error("eval run %s failed", eval_run_id, exc_info=future.exception())

    def start() -> None:
        submit(execute_eval_run(eval_run_id)).add_done_callback(report)

    transaction.on_commit(start)

"""No run is left looking alive with nobody to run it, and no execution ends a run it no longer
holds: a run whose claim cannot prepare it is failed (not left leased for the sweep to hand out
forever); a run failed at its claim resumes; a crash of a worker whose run was taken over does
not fail the new holder's run; a cancel of a running run that nobody executes finishes it; a
claim batch cancelled by a loop's teardown still answers its callers; two executions never
share a lease. (Found by a review: each test failed before its fix.)"""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.utils import timezone

from mcpgateway.inprocess import InProcessToolbox
from orchestrator import store as store_module
from orchestrator.actions.runs import (
    do_cancel_run,
    do_resume_run,
    finish_unheld_cancels,
    stuck_runs,
)
from orchestrator.execution import _hand_back, execute_run
from orchestrator.models import Agent, PipelineVersion, Run, RunEvent, StepRun
from orchestrator.runners import claims
from tests.conftest import pipeline, scripted, start

pytestmark = pytest.mark.django_db(transaction=True)

ELSEWHERE = "elsewhere@1:4242:aa:bb"  # another live worker, which took a run over


def _one_step(team, name: str = "p", **reply):
    if not Agent.objects.filter(team=team, name="w").exists():
        scripted(team, "w", {"text": "ok", **reply})
    return pipeline(team, {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "go"}]}, name=name)


def _events(run: Run) -> list[str]:
    return list(RunEvent.objects.filter(run=run).order_by("seq").values_list("type", flat=True))


def test_a_run_whose_spec_no_longer_loads_is_failed_at_its_claim_not_left_leased(team):
    run = start(_one_step(team))
    # A stored spec that no longer parses (stricter validation after an upgrade; `save` refuses it).
    PipelineVersion.objects.filter(pk=run.pipeline_version_id).update(spec={"steps": []})

    assert async_to_sync(execute_run)(run.pk, toolbox=InProcessToolbox()) is None

    run.refresh_from_db()
    assert (run.status, run.lease_owner, run.lease_until) == ("failed", "", None)
    assert run.error.startswith("the run cannot be prepared: SpecError")
    assert _events(run)[-1] == "run.failed"
    assert not stuck_runs(queued_for_s=0).filter(pk=run.pk).exists()  # nothing for the sweep to hand out again


def test_a_run_failed_at_its_claim_lets_its_lease_go_and_resumes(team):
    run = start(_one_step(team))
    Agent.objects.filter(team=team, name="w").delete()
    assert claims.claim_runs([(run.pk, "me:1")]) == [None]
    run.refresh_from_db()
    assert (run.status, run.lease_owner, run.lease_until) == ("failed", "", None)
    assert run.error == "agents not found: w" and _events(run)[-1] == "run.failed"

    scripted(team, "w", {"text": "ok"})  # the agent is back; resumed at once (within a lease's time)
    do_resume_run(run, submit=False)
    outcome = async_to_sync(execute_run)(run.pk, toolbox=InProcessToolbox())

    assert outcome is not None and outcome.status == "succeeded"


def test_a_resumed_run_does_not_keep_a_stale_lease(team):
    run = start(_one_step(team))
    Run.objects.filter(pk=run.pk).update(status="failed", lease_owner="gone:1", lease_until=timezone.now() + timedelta(minutes=5))
    run.refresh_from_db()
    do_resume_run(run, submit=False)
    run.refresh_from_db()
    assert (run.status, run.lease_owner, run.lease_until) == ("queued", "", None)


def broken_toolbox(team_id: int):
    raise RuntimeError("no toolbox today")


def test_a_run_that_cannot_be_started_after_its_claim_is_failed(team, settings):
    settings.AGENTDECK_TOOLBOX = f"{__name__}.broken_toolbox"
    run = start(_one_step(team))

    with pytest.raises(RuntimeError, match="no toolbox today"):
        async_to_sync(execute_run)(run.pk)

    run.refresh_from_db()
    assert (run.status, run.lease_owner) == ("failed", "")
    assert run.error == "internal error: RuntimeError: no toolbox today"


def test_a_crash_of_a_worker_whose_run_was_taken_over_does_not_fail_the_new_holders_run(team, monkeypatch):
    run = start(_one_step(team, delay_ms=1500))

    async def scenario():
        task = asyncio.get_running_loop().create_task(execute_run(run.pk, toolbox=InProcessToolbox()))
        for _ in range(250):
            if await sync_to_async(StepRun.objects.filter(run_id=run.pk, key="a", status="running").exists)():
                break
            await asyncio.sleep(0.02)
        # This worker's lease ran out (a long pause, a database outage) and another took the run over.
        await sync_to_async(Run.objects.filter(pk=run.pk).update)(
            lease_owner=ELSEWHERE, lease_until=timezone.now() + timedelta(seconds=60))

        def unavailable(team_id=None):
            raise RuntimeError("secrets store briefly unavailable")

        monkeypatch.setattr(store_module, "get_redactor", unavailable)  # its next commit fails before the lease check
        with pytest.raises(RuntimeError, match="briefly unavailable"):
            await task

    async_to_sync(scenario)()
    run.refresh_from_db()
    assert (run.status, run.lease_owner, run.error) == ("running", ELSEWHERE, "")


@pytest.mark.parametrize("how", ["handed back at a shutdown", "its worker died"])
def test_a_cancel_of_a_running_run_that_nobody_executes_finishes_it(team, how):
    run = start(_one_step(team))
    assert isinstance(claims.claim_runs([(run.pk, "me:1")])[0], claims.Prepared)  # a worker took it
    if how == "handed back at a shutdown":
        _hand_back(run.pk, "me:1")
    else:
        Run.objects.filter(pk=run.pk).update(lease_until=timezone.now() - timedelta(seconds=1))

    do_cancel_run(run)

    run.refresh_from_db()
    assert (run.status, run.error, run.lease_owner, run.lease_until) == ("cancelled", "cancelled", "", None)
    assert _events(run)[-2:] == ["run.cancel_requested", "run.cancelled"]


def test_a_cancel_of_a_held_run_is_left_to_its_worker_and_the_sweep_finishes_it_if_the_worker_dies(team):
    run = start(_one_step(team))
    assert isinstance(claims.claim_runs([(run.pk, "me:1")])[0], claims.Prepared)
    StepRun.objects.create(run=run, key="a", step_id="a", kind="agent", status="running")

    do_cancel_run(run)  # the holder is alive: it sees the flag at its next commit
    run.refresh_from_db()
    assert (run.status, run.cancel_requested, run.lease_owner) == ("running", True, "me:1")
    assert finish_unheld_cancels() == []

    Run.objects.filter(pk=run.pk).update(lease_until=timezone.now() - timedelta(seconds=1))  # ... then it died
    assert finish_unheld_cancels() == [run.pk]

    run.refresh_from_db()
    assert (run.status, run.lease_owner, run.lease_until) == ("cancelled", "", None)
    assert StepRun.objects.get(run=run, key="a").status == "cancelled"
    assert _events(run)[-1] == "run.cancelled"


def test_a_claim_batch_cancelled_before_it_started_tells_its_callers(team):
    run = start(_one_step(team))

    async def scenario() -> tuple[bool, BaseException | None]:
        coalescer = claims.ClaimCoalescer()
        future = coalescer.claim(run.pk, "me:1")
        await asyncio.sleep(0)  # the batch task exists; its first step has not run
        (task,) = coalescer._batches
        task.cancel()  # what a loop's teardown does to every task left
        await asyncio.sleep(0.2)
        return future.done(), future.exception() if future.done() else None

    done, error = asyncio.run(scenario())
    assert done and isinstance(error, RuntimeError)
    run.refresh_from_db()
    assert (run.status, run.lease_owner) == ("queued", "")  # nothing was claimed


def test_a_loop_torn_down_while_a_run_is_being_claimed_does_not_hang_and_leaves_no_lease(team):
    run = start(_one_step(team))

    async def main() -> None:
        asyncio.get_running_loop().create_task(execute_run(run.pk, toolbox=InProcessToolbox()))
        await asyncio.sleep(0)  # the run made its claim; main returns at once (asyncio.run cancels the rest)

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    thread.join(30)

    assert not thread.is_alive(), "asyncio.run's teardown waits forever for the claim"
    run.refresh_from_db()
    # Claimed on the writer thread, then handed back by the cancelled execution: free to take now.
    assert run.status in ("queued", "running")
    assert run.status == "queued" or run.lease_until <= timezone.now()


def test_a_run_asked_for_twice_by_the_same_owner_is_handed_out_once(team):
    run = start(_one_step(team))
    first, second = claims.claim_runs([(run.pk, "me:1:ab12"), (run.pk, "me:1:ab12")])
    assert isinstance(first, claims.Prepared) and second is None


def test_a_crashed_execution_fails_only_a_run_it_still_holds(team):
    from orchestrator.actions.runs import do_fail_run

    run = start(_one_step(team))
    Run.objects.filter(pk=run.pk).update(status="waiting_review", lease_owner="", lease_until=None)  # paused meanwhile
    assert do_fail_run(run.pk, "internal error: late", owner="me:1") is False
    assert Run.objects.get(pk=run.pk).status == "waiting_review"
    Run.objects.filter(pk=run.pk).update(status="queued")  # resumed: another execution will take it
    assert do_fail_run(run.pk, "internal error: late", owner="me:1") is False
    Run.objects.filter(pk=run.pk).update(status="running", lease_owner="me:1")
    assert do_fail_run(run.pk, "internal error: now", owner="me:1") is True
    assert Run.objects.get(pk=run.pk).status == "failed"


def test_a_run_resumed_while_a_dead_worker_still_held_it_is_sent_on_once_the_lease_runs_out(team):
    """The user resumes a running run whose worker just died: its lease is still live, so the
    resume changes nothing (its holder may as well be executing it: set queued, it lost its
    lease renewals and ran twice, tests/orchestrator/test_resume_while_running.py).
    Once the lease runs out the sweep sends it on, and it runs to the end."""
    run = start(_one_step(team, "resumed-held"))
    Run.objects.filter(pk=run.pk).update(status="running", lease_owner=ELSEWHERE,
                                         lease_until=timezone.now() + timedelta(seconds=25))
    do_resume_run(Run.objects.get(pk=run.pk), submit=False)
    run.refresh_from_db()
    assert (run.status, run.lease_owner) == ("running", ELSEWHERE)  # a live lease is left to its holder
    assert RunEvent.objects.filter(run=run, type="run.resume_requested").exists()
    assert async_to_sync(execute_run)(run.pk, toolbox=InProcessToolbox()) is None  # held: not claimed
    assert not stuck_runs(queued_for_s=0).filter(pk=run.pk).exists()  # not while the lease is live

    Run.objects.filter(pk=run.pk).update(lease_until=timezone.now() - timedelta(seconds=1))  # it runs out
    assert stuck_runs(queued_for_s=0).filter(pk=run.pk).exists()
    assert async_to_sync(execute_run)(run.pk, toolbox=InProcessToolbox()).status == "succeeded"


def test_resuming_a_running_run_whose_lease_ran_out_lets_the_lease_go(team):
    """...and gives back what its dead holder reserved: the claim that follows has no owner to
    take over from, so it gives nothing back."""
    from orchestrator.budgets import budgets_for_run, reserve
    from orchestrator.models import BudgetCounter, BudgetReservation, Limit

    run = start(_one_step(team, "resumed-expired"))
    limit = Limit.objects.create(team=team, scope="team", kind="tokens_per_day", value=1000)
    Run.objects.filter(pk=run.pk).update(status="running", lease_owner=ELSEWHERE,
                                         lease_until=timezone.now() + timedelta(seconds=30))
    pipeline_id = run.pipeline_version.pipeline_id
    reserve(budgets_for_run(team.pk, pipeline_id), 400, 0, run_id=run.pk, lease_owner=ELSEWHERE)  # its holder's call in flight
    Run.objects.filter(pk=run.pk).update(lease_until=timezone.now() - timedelta(seconds=5))  # ...then it died
    do_resume_run(Run.objects.get(pk=run.pk), submit=False)
    run.refresh_from_db()
    assert (run.status, run.lease_owner, run.lease_until) == ("queued", "", None)
    assert not BudgetReservation.objects.filter(run=run).exists()
    assert BudgetCounter.objects.get(limit=limit).used == 0  # (it was 400 while reserved)
    assert async_to_sync(execute_run)(run.pk, toolbox=InProcessToolbox()).status == "succeeded"


def test_the_sweep_sends_a_waiting_backlog_once_per_period_not_on_every_pass(team, settings, monkeypatch):
    """Queued runs waiting for busy workers: the sweep sends each one again after
    STUCK_QUEUED_S since it was created or last sent, not on every pass (it counted from
    `created_at`: 200 runs, 4 passes, 800 messages); a resumed run counts from its resume."""
    from orchestrator import tasks

    settings.STUCK_QUEUED_S = 60
    pipe = _one_step(team, "backlog")
    runs = [start(pipe) for _ in range(5)]
    Run.objects.filter(pk__in=[r.pk for r in runs]).update(created_at=timezone.now() - timedelta(minutes=2))
    sent: list[int] = []
    monkeypatch.setattr(tasks.execute_run_task, "delay", sent.append)  # the messages, counted instead of published
    for _ in range(4):
        tasks.requeue_stuck_runs_task()
    assert sorted(sent) == sorted(r.pk for r in runs)  # once each
    Run.objects.filter(pk=runs[0].pk).update(dispatched_at=timezone.now() - timedelta(seconds=61))
    tasks.requeue_stuck_runs_task()
    assert sent[-1] == runs[0].pk and len(sent) == 6  # again, a period later

    failed = start(pipe)
    Run.objects.filter(pk=failed.pk).update(status="failed", created_at=timezone.now() - timedelta(hours=1))
    do_resume_run(Run.objects.get(pk=failed.pk), submit=False)  # its resume sent it
    assert not stuck_runs().filter(pk=failed.pk).exists()

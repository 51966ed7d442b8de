# Found by an outside review (2026-12-07, the async pool and the /mcp path); failed before its fix.
"""Review of the worker pool's leases: a run resumed again while a worker of the pool executes it.

`do_resume_run` on a running run whose lease is live sets the run `queued` and leaves the lease
to its holder ("A live lease is left to its holder", orchestrator/actions/runs.py). The holder
goes on executing the run, but the loop's lease keeper renews only rows whose status is
`running` (orchestrator/runners/lease_keeper.py, `_look`: `... AND status = 'running'`), and
its flag look only flags a cancel or another holder: the lease runs out while the run is still
being executed, the stuck-runs sweep lists it (`queued` with an expired lease), and the next
worker's `claim_one` takes it over while the first still makes its model call — the run is
executed twice at once (the in-flight model call, and budget reservations given back under the
live holder's feet). The trigger is an ordinary API call: `POST /runs/{id}/resume` sent twice
(a client retrying, two operators), the second landing once the worker has claimed the run.
"""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.utils import timezone

from orchestrator.actions.errors import Conflict
from orchestrator.actions.runs import do_resume_run, stuck_runs
from orchestrator.models import Run, StepRun
from orchestrator.runners import worker_pool
from tests.conftest import pipeline, scripted, start

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _wait(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_a_run_resumed_again_while_the_pool_executes_it_keeps_its_lease(team, settings):
    settings.AGENTDECK_TOOLBOX = "tests.fakes.counting_tools.factory"
    settings.RUN_LEASE_S = 3  # the keeper renews it every second while the run executes
    scripted(team, "w", {"text": "ok", "delay_ms": 15000})
    run = start(pipeline(team, {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "go"}]}))
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(worker_pool.execute, run.pk)  # as a pool thread of the worker does
        _wait(lambda: StepRun.objects.filter(run=run, key="a", status="running").exists(), 30)
        owner = Run.objects.get(pk=run.pk).lease_owner
        assert owner, "claimed by this process"
        with contextlib.suppress(Conflict):  # (refusing to resume a run a live worker holds is fine too)
            do_resume_run(Run.objects.get(pk=run.pk), submit=False)  # a second POST /runs/{id}/resume
        time.sleep(2 * settings.RUN_LEASE_S + 1)  # over two leases; the model call has ~8 s to go
        still_executing = not first.done()
        held = Run.objects.get(pk=run.pk)
        now = timezone.now()
        live = held.lease_owner == owner and held.lease_until is not None and held.lease_until > now
        swept = stuck_runs(queued_for_s=0).filter(pk=run.pk).exists()
        stop = first.result(timeout=60)
    assert still_executing, "the check above ran while the run was still in its model call"
    assert live, (f"the worker executing the run stopped renewing its lease: status {held.status}, "
                  f"lease until {held.lease_until} (now {now})")
    assert not swept, "the stuck-runs sweep would hand a run this worker is executing to another worker"
    assert stop.status == "succeeded"

# Found by an outside review (2026-12-07, the async pool and the /mcp path); failed before its fix.
"""Review of the worker pool's leases: a lease given back at shutdown, renewed again by the keeper.

At a warm or cold shutdown every run of the loop is cancelled and, as `execute_run` unwinds,
gives its lease back (`execution._hand_back`: `lease_until = now`, owner and status kept) and
only then, in its `finally`, leaves the loop's lease keeper (`leases.release`). The keeper
snapshots the runs it keeps and the renewals that are due on the loop, then runs its look on a
writer thread (`lease_keeper._watch` -> `run_write(_look, owners, due)`); `_look` renews every
due row still `running` and held by the same owner, which a handed-back row still is. At a
shutdown the writer threads are busy with every run's final commit and hand-back, so a look
whose snapshot was taken before a run's release runs after its hand-back committed, and puts
the lease back to `now + AGENTDECK_RUN_LEASE_S`: the requeued message's next worker (another
host) finds the run held and waits out a whole lease (30 s by default) instead of resuming it
"at once" (README, "Shutdown").

The test takes that order deterministically with the real keeper, the real writer threads and
the real hand-back: the hand-back commits on a writer thread whose answer reaches the loop a
moment later (as when the loop and the writer threads are busy), the keeper looks meanwhile,
then the run leaves the keeper exactly as `execute_run` does.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from config.db_writer import write_job
from orchestrator.execution import _hand_back
from orchestrator.models import Run
from orchestrator.runners.lease_keeper import POLL_S, LeaseKeeper
from tests.conftest import pipeline, scripted, start

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

OWNER = "elsewhere@1:4242:abcdef:1"


def _hand_back_answered_late(run_id: int, owner: str, committed: threading.Event, answer: threading.Event,
                             seen: list) -> None:
    _hand_back(run_id, owner)  # committed: another worker may take the run from now on
    seen.append(Run.objects.filter(pk=run_id).values_list("lease_until", flat=True).get())
    committed.set()
    answer.wait(10)  # its answer reaches the run's task a moment later (a busy shutdown)


def test_a_lease_handed_back_is_not_renewed_by_the_keeper(team, settings):
    settings.RUN_LEASE_S = 1  # (every look of the keeper is a renewal: every third of the lease, at least POLL_S)
    scripted(team, "w", {"text": "ok"})
    run = start(pipeline(team, {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "go"}]}))
    Run.objects.filter(pk=run.pk).update(status="running", lease_owner=OWNER,
                                         lease_until=timezone.now() + timedelta(seconds=60))
    seen: list = []

    async def shutdown_hands_it_back() -> None:
        keeper = LeaseKeeper()
        keeper.hold(run.pk, OWNER)  # the run executes on this loop
        committed, answer = threading.Event(), threading.Event()
        # The shutdown cancelled the run; as it unwinds it gives its lease back.
        job = write_job(_hand_back_answered_late, run.pk, OWNER, committed, answer, seen)
        while not committed.is_set():
            await asyncio.sleep(0.01)
        await asyncio.sleep(2.5 * POLL_S)  # the keeper looks meanwhile: it still keeps the run
        answer.set()
        await job
        keeper.release(run.pk, OWNER)  # `execute_run`'s finally, once the hand-back answered
        await asyncio.sleep(4 * POLL_S)  # any look already under way ends
        assert len(keeper) == 0

    async_to_sync(shutdown_hands_it_back)()
    handed_back = seen[0]
    now_until = Run.objects.get(pk=run.pk).lease_until
    assert handed_back <= timezone.now()
    assert now_until == handed_back, (
        f"the lease given back (until {handed_back}) was renewed to {now_until} after the hand-back: "
        "the next worker waits a whole lease for the run")

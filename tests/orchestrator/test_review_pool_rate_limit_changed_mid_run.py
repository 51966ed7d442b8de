# Found by an outside review (2026-12-07, worker pool and failures); failed before its fix.
"""Outside review (pool / limits across runs): a per-agent model-call rate limit (`requests per
minute` scoped to an agent) created or changed while a run goes on never holds for that run.

`orchestrator/runners/claims.py: _assemble` reads the agents' rates once, at the claim
(`Prepared.agent_rates`), and `orchestrator/model_door.py: ModelDoor.complete` passes that
frozen dict to `limits.wait_for_agent_slot` for every call of the run, however long it lives.
The budgets had the same flaw and were fixed (`_fresh_budgets`,
`tests/orchestrator/test_budget_changed_mid_run.py`); the rates were not. So an operator who
throttles an agent during an incident (the provider is rate-limiting, a runaway loop) does not
throttle any run already in flight — a loop step may call the model hundreds of times for
hours — and, the other way, a limit raised or deleted keeps throttling the runs in flight at
the old value until the calls time out and the step fails.

Observable here through the limiter's own log: a call admitted under a limit is logged in the
sliding-window counters (`mcpgateway.ratelimit`, the database limiter without REDIS_URL). After
the limit is created, each of the run's next model calls must be counted against it. The
door reads the rates again with the budgets: a run under no budget at most every
`BUDGETS_FRESH_S`, so the tool waits that long after creating the limit.
"""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings

from config.db_writer import releasing
from mcpgateway.inprocess import InProcessToolbox
from mcpgateway.models import RateCounter
from orchestrator.actions.limits import do_save_limit
from orchestrator.model_door import BUDGETS_FRESH_S
from orchestrator.models import Limit
from tests.conftest import execute, pipeline, scripted, start

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_model_call_rate_limit_created_while_a_run_goes_on_holds_for_its_next_calls(team):
    if settings.REDIS_URL:
        pytest.skip("reads the database limiter's log")
    scripted(team, "boss", {"tool_calls": [{"name": "t__throttle", "arguments": {}}]}, {"text": "ok"})
    worker = scripted(team, "w", {"text": "y"})

    async def throttle() -> str:
        def go():
            do_save_limit(team, "agent", "requests_per_minute", "10", target_id=worker.pk)
        await sync_to_async(releasing(go), thread_sensitive=False)()
        await asyncio.sleep(BUDGETS_FRESH_S + 0.1)  # a run under no budget reads limits at most this often
        return "throttled"

    box = InProcessToolbox(grants={"boss": ["t__throttle"]})
    box.register("t__throttle", throttle, "Throttle agent w", {"type": "object", "properties": {}})
    spec = {"steps": [{"kind": "agent", "id": "boss", "agent": "boss", "prompt": "throttle"},
                      *({"kind": "agent", "id": f"s{i}", "agent": "w", "prompt": "go"} for i in range(3))]}

    run = execute(start(pipeline(team, spec)), box)

    assert run.status == "succeeded", run.error
    assert Limit.objects.filter(team=team, kind="requests_per_minute", agent=worker).exists()  # the tool made it
    counted = RateCounter.objects.filter(key=f"model:agent:{worker.pk}", window__gt=0).count()
    assert counted == 3, (f"3 calls of agent w were made after its 10/min limit was created; the limit counted "
                          f"{counted} of them (the run kept the rates its claim read)")

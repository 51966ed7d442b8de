"""A loop torn down while `_Audit.start` waits for its `started` row (asyncio.run's end,
asgiref's async_to_sync loop, a worker loop stopping: each cancels *every* task left) cancels
the inner `pending` task itself -- `ensure_future` made it a task, so the shield does not
protect it. The loop then closes; the BatchWriter thread commits the row and calls
`loop.call_soon_threadsafe` on the closed loop: RuntimeError escapes `_flush`, the writer
thread dies, and `self._thread` still names it, so no later `submit` ever starts a thread:
every later gateway write of the process (rate-limit hits, `started` rows, outcomes) waits
for ever. (The settle-on-a-closed-loop crash predates 3c29dd8; the new ensure_future task is
what makes loop teardown reach the write.)"""
# Found by a review of the first fix, which wrote this test; it failed before the fix and describes the fault it guards against.
from __future__ import annotations

import asyncio
import threading
import time

import pytest

from config.db_writer import BatchWriter
from mcpgateway import dispatch
from mcpgateway.types import Principal, ToolInvocation

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_loop_closing_during_a_started_write_does_not_kill_the_gateway_writer(monkeypatch):
    writer = BatchWriter("teardown-test")
    committed = []

    def slow_insert(rows):
        time.sleep(0.3)  # a busy database
        committed.extend(rows)
        return [None] * len(rows)

    writer.register("audit", slow_insert)
    monkeypatch.setattr(dispatch, "gateway_writes", writer)
    invocation = ToolInvocation(principal=Principal(team_id=1, api_key_id=1), name="t__x", arguments={}, call_id="c1")
    audit = dispatch._Audit(invocation, None, None, time.perf_counter())

    async def request_loop() -> None:
        asyncio.get_running_loop().create_task(audit.start())  # a handler still in flight ...
        await asyncio.sleep(0.05)  # ... when its loop is torn down

    asyncio.run(request_loop())
    time.sleep(0.6)  # the writer commits the `started` row and settles it on the closed loop
    assert len(committed) == 1

    async def later_write() -> object:
        return await asyncio.wait_for(writer.submit("audit", {"later": True}), 5)

    outcome: list[object] = []
    thread = threading.Thread(target=lambda: outcome.append(_run(later_write)))
    thread.start()
    thread.join(10)
    assert outcome and outcome[0] is None, f"a later gateway write never completed: {outcome!r}"
    assert audit.dispatch_id, "its started row was committed, but the call forgot its id (a second row follows)"


def _run(coro_fn):
    try:
        return asyncio.run(coro_fn())
    except BaseException as exc:
        return exc

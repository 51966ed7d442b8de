"""The embedded runner: runs execute as asyncio tasks on the process's background loop.

That loop (`mcpgateway.background`) lives on its own daemon thread, so sync code (views,
commands, tests) and async code (daphne) can submit runs alike, and tool calls reach the
upstream sessions that live on the same loop without a thread hop.
"""

from __future__ import annotations

import concurrent.futures
import logging

from mcpgateway.background import submit
from orchestrator.execution import execute_run

log = logging.getLogger(__name__)


class InlineRunner:
    def __init__(self) -> None:
        self._futures: dict[int, concurrent.futures.Future] = {}

    def submit(self, run_id: int) -> None:
        current = self._futures.get(run_id)
        if current is not None and not current.done():
            return  # already executing here; it will pick up new state at its next step
        future = submit(execute_run(run_id))
        self._futures[run_id] = future
        future.add_done_callback(lambda f: self._done(run_id, f))

    def _done(self, run_id: int, future: concurrent.futures.Future) -> None:
        if not future.cancelled() and future.exception() is not None:
            log.error("run %s crashed", run_id, exc_info=future.exception())

    def cancel(self, run_id: int) -> None:
        future = self._futures.get(run_id)
        if future is not None and not future.done():
            future.cancel()

    def wait(self, run_id: int, timeout: float = 30.0) -> None:
        """Block until the run's current execution ends (tests, CLI)."""
        future = self._futures.get(run_id)
        if future is not None:
            try:
                future.result(timeout=timeout)
            except concurrent.futures.CancelledError:
                pass

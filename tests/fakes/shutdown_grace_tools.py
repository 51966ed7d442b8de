"""A toolbox factory for the worker-shutdown tests: `t__record` takes a while
(`AGENTDECK_TEST_TOOL_DELAY_S`) and appends a `start` line before and an `end` line after to
the file named by `AGENTDECK_TEST_CALL_LOG`, so a test can tell a call cut off mid-flight
(a start without its end) from one that ran to its end, across processes."""

from __future__ import annotations

import asyncio
import json
import os

from mcpgateway.inprocess import InProcessToolbox


def _log(**line: object) -> None:
    with open(os.environ["AGENTDECK_TEST_CALL_LOG"], "a") as log:
        log.write(json.dumps({**line, "pid": os.getpid()}) + "\n")
        log.flush()
        os.fsync(log.fileno())


def factory(team_id: int) -> InProcessToolbox:
    box = InProcessToolbox(grants={"*": ["*"]})

    async def record(text: str) -> str:
        _log(event="start", text=text)
        await asyncio.sleep(float(os.environ.get("AGENTDECK_TEST_TOOL_DELAY_S", "4")))
        _log(event="end", text=text)
        return f"recorded {text}"

    box.register("t__record", record, "Record a call, slowly", {"type": "object", "properties": {"text": {"type": "string"}}})
    return box

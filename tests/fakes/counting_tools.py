"""A toolbox factory for subprocess tests: every real tool invocation appends a line to the
file named by `AGENTDECK_TEST_CALL_LOG`, so a test can count calls across processes."""

from __future__ import annotations

import json
import os

from mcpgateway.inprocess import InProcessToolbox


def factory(team_id: int) -> InProcessToolbox:
    box = InProcessToolbox(grants={"*": ["*"]})

    def record(text: str) -> str:
        with open(os.environ["AGENTDECK_TEST_CALL_LOG"], "a") as log:
            log.write(json.dumps({"text": text}) + "\n")
            log.flush()
            os.fsync(log.fileno())
        return f"recorded {text}"

    box.register("t__record", record, "Record a call", {"type": "object", "properties": {"text": {"type": "string"}}})
    return box

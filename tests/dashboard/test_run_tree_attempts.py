"""Review r2 of 8d4f066 (dashboard/runs/tree.py): a second `tool.started` of an open call id is
merged into the first — but a scripted model's call ids restart at every attempt, and a new
attempt that a reviewer's "retry" starts emits no `step.retrying` (which alone resets the ids).
Attempt 2's call then vanishes from its own turn and its outcome is shown under attempt 1's."""
# Found by a second outside review (of the run tree's merged calls), which wrote these tests; each failed before its fix.
from types import SimpleNamespace

import pytest

from dashboard.runs.tree import StepNode, _read_agent_events


def _e(type_, **data):
    return SimpleNamespace(type=type_, data=data)


@pytest.mark.no_database
def test_a_new_attempts_call_with_a_reused_id_shows_in_its_own_turn():
    node = StepNode("work", None)
    events = [
        _e("step.started", attempt=1, prompt="go"),
        _e("llm.started", attempt=1, turn=1),
        _e("llm.finished", attempt=1, turn=1, text=""),
        _e("tool.started", call_id="call_0_0", name="docs__fetch", arguments={"url": "https://a.test"}),
        # attempt 1 timed out mid-call (read-only: no interrupted review), failed, went to review;
        _e("step.waiting_review", reason="failure"),
        # the reviewer chose "retry": attempt 2 (no step.retrying event on this path)
        _e("step.started", attempt=2, prompt="go", resumed=True),
        _e("llm.started", attempt=2, turn=1),
        _e("llm.finished", attempt=2, turn=1, text=""),
        _e("tool.started", call_id="call_0_0", name="docs__fetch", arguments={"url": "https://b.test"}),
        _e("tool.finished", call_id="call_0_0", content="page b"),
    ]
    try:
        _read_agent_events(node, events)
    except AttributeError:  # (a node without a row: status lookups) — the turns are built before that
        pass
    second = [t for t in node.turns if t.attempt == 2]
    assert second and [c.arguments for c in second[0].tool_calls] == [{"url": "https://b.test"}], \
        [(t.attempt, [(c.arguments, c.content) for c in t.tool_calls]) for t in node.turns]

"""The built-in sandbox server honours idempotency keys: a repeated key returns the first
result instead of running the code again (within the sandbox server process's lifetime)."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync

from mcpgateway.dispatch import Gateway
from mcpgateway.types import Principal, ToolInvocation
from tests.mcpgateway.sandbox.conftest import make_sandbox, structured  # noqa: F401 - the fixture

pytestmark = pytest.mark.docker
APPEND = "open('n.txt', 'a').write('x'); print(len(open('n.txt').read()))"


def run_python(key: str) -> str:
    invocation = ToolInvocation(Principal(team_id=1, agent="tester"), "sandbox__run_python", {"code": APPEND},
                                call_id="c", run_id=7, step_key="work", idempotency_key=key)
    return structured(async_to_sync(Gateway(1).call_tool)(invocation))["stdout"].strip()


def test_it_returns_the_first_result_for_a_repeated_key(make_sandbox):  # noqa: F811
    make_sandbox()

    assert [run_python("run-7/work/1/1"), run_python("run-7/work/1/1"), run_python("run-7/work/1/3")] == ["1", "1", "2"]

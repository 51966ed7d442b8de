"""Execute one run in this process and die (as with SIGKILL: no cleanup) right after the
gateway returned the outcome of a call of tool argv[2] — its audit row already committed
with that outcome, the engine's ledger row for it not yet committed."""

import os
import sys

import django

django.setup()

from asgiref.sync import async_to_sync  # noqa: E402

from mcpgateway import dispatch  # noqa: E402
from orchestrator.execution import execute_run  # noqa: E402

original = dispatch.Gateway.call_tool


async def call_then_die(self, invocation):
    result = await original(self, invocation)
    if invocation.name == sys.argv[2]:
        os._exit(137)
    return result


dispatch.Gateway.call_tool = call_then_die
async_to_sync(execute_run)(int(sys.argv[1]))
print("the run ended without the crash", flush=True)

"""Gateway benchmark (TARGETS.md): latency and throughput of an echo tool called directly
over an SDK session, and through the gateway's dispatch path, at concurrency 1, 16, 64.

Both sides use the same kind of upstream: the TypeScript `server-everything` over stdio
(`echo`), and the Python SDK echo server in tests/fakes. "Through the gateway" is the path
every pipeline tool call takes: catalogue and grant check, rate limits (a generous limit
on the grant, so it is exercised), the upstream session, sanitising, and one audit row
written to the database (SQLite file, synchronous=FULL). Printed in one run, with ratios.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CALLS = {1: 300, 16: 1600, 64: 3200}


def _setup_django() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="agentdeck-gw-bench-"))
    os.environ["SQLITE_PATH"] = str(tmp / "bench.sqlite3")
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


async def _measure(call, concurrency: int, total: int) -> dict[str, float]:
    latencies: list[float] = []
    queue = iter(range(total))

    async def worker() -> None:
        for i in queue:
            started = time.perf_counter()
            await call(i)
            latencies.append((time.perf_counter() - started) * 1000)

    for _ in range(20):  # warm up
        await call(-1)
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {"p50": statistics.median(latencies), "p99": latencies[int(len(latencies) * 0.99) - 1], "rps": total / elapsed}


async def _bench_upstream(label: str, command: str, args: list[str], tool: str, upstream_tool: str) -> list[str]:
    from asgiref.sync import sync_to_async
    from mcp import Client, StdioServerParameters

    from mcpgateway.actions.access import do_grant
    from mcpgateway.actions.servers import do_save_server
    from mcpgateway.dispatch import Gateway
    from mcpgateway.runtime import get_runtime
    from mcpgateway.types import Principal, ToolInvocation

    lines = [f"gateway: {label}"]
    params = StdioServerParameters(command=command, args=args, cwd=str(ROOT))
    async with Client(params) as client:
        async def direct(i: int) -> None:
            result = await client.call_tool(upstream_tool, {"message": f"m{i}"})
            assert not result.is_error

        direct_results = {c: await _measure(direct, c, n) for c, n in CALLS.items()}

    name = label.split()[0]

    def setup() -> None:
        server = do_save_server(1, name, transport="stdio", command=command, args=args, cwd=str(ROOT), operator=True)
        do_grant(server, agent="bench", calls_per_minute=1_000_000)

    await sync_to_async(setup)()
    runtime = get_runtime()
    await runtime.sync()
    await runtime.ready()
    gateway = Gateway(1)
    principal = Principal(team_id=1, agent="bench")
    assert tool in [t.name for t in await gateway.list_tools(principal)], "tool not discovered"

    async def through(i: int) -> None:
        result = await gateway.call_tool(ToolInvocation(principal, tool, {"message": f"m{i}"}, call_id=str(i)))
        assert not result.is_error, result.content

    gateway_results = {c: await _measure(through, c, n) for c, n in CALLS.items()}
    for c in CALLS:
        d, g = direct_results[c], gateway_results[c]
        lines.append(
            f"  c={c:<3} direct p50 {d['p50']:6.2f} ms p99 {d['p99']:6.2f} ms {d['rps']:7.0f}/s | "
            f"gateway p50 {g['p50']:6.2f} ms p99 {g['p99']:6.2f} ms {g['rps']:7.0f}/s | "
            f"added p50 {g['p50'] - d['p50']:+.2f} ms p99 {g['p99'] - d['p99']:+.2f} ms, throughput {g['rps'] / d['rps']:.2f}x"
        )
    return lines


async def _main() -> list[str]:
    from mcpgateway.runtime import get_runtime

    lines = []
    lines += await _bench_upstream("everything (TypeScript server-everything, stdio)", "npx",
                                   ["-y", "@modelcontextprotocol/server-everything"], "everything__echo", "echo")
    lines += await _bench_upstream("pyecho (Python SDK echo server, stdio)", sys.executable,
                                   ["-m", "tests.fakes.mcp_echo_server"], "pyecho__echo", "echo")
    await get_runtime().stop()
    return lines


def main() -> int:
    _setup_django()
    from mcpgateway.background import submit

    lines = submit(_main()).result(timeout=900)
    print("\n".join(lines))
    print("  targets: added p50 <= +1.5 ms and p99 <= +5 ms at c=1; throughput >= 0.8x direct and >= 1000 calls/s at c=16, 64")
    return 0


if __name__ == "__main__":
    sys.exit(main())

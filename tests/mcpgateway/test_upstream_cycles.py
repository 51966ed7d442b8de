"""Opening and closing stdio upstreams over and over leaves no subprocess and no open
file behind, including when a server is removed while it is still starting."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

import pytest

from mcpgateway.upstream import Supervisor, UpstreamConfig

ROOT = Path(__file__).resolve().parents[2]
# server-memory run by node directly (npx would add ~0.5 s of npm start-up per cycle).
MEMORY_SERVER = ROOT / "node_modules" / "@modelcontextprotocol" / "server-memory" / "dist" / "index.js"
CYCLES = 200
LANES = 4


def child_pids() -> set[int]:
    """Direct children of this process, zombies included, from /proc."""
    me = os.getpid()
    children: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                ppid = int(stat.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == me:
            children.add(int(entry))
    return children


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.slow
def test_it_leaves_no_subprocess_after_many_add_remove_cycles(tmp_path: Path) -> None:
    async def scenario() -> None:
        random.seed(7)
        children_before = child_pids()
        async with Supervisor() as sup:
            fds_before = open_fds()

            async def lane(index: int) -> None:
                for cycle in range(CYCLES // LANES):
                    name = f"memory-{index}"
                    await sup.add(UpstreamConfig(
                        name=name, transport="stdio", command="node", args=(str(MEMORY_SERVER),),
                        env={"MEMORY_FILE_PATH": str(tmp_path / f"{name}.jsonl")}, cwd=str(ROOT),
                    ))
                    if cycle % 4 == 3:
                        # Removed while still spawning or handshaking.
                        await asyncio.sleep(random.uniform(0, 0.15))
                    else:
                        health = await sup.wait_up(name, timeout=20)
                        assert health.pid in child_pids()
                        result = await sup.call_tool(name, "read_graph", {})
                        assert result.is_error is False
                    await sup.remove(name)
                    assert name not in sup.names()

            await asyncio.gather(*(lane(i) for i in range(LANES)))
            assert child_pids() == children_before
            # No growth: earlier tests in the same process may still be closing their own fds.
            assert open_fds() <= fds_before
        assert child_pids() == children_before

    asyncio.run(scenario())

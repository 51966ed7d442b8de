"""The peer for the engine benchmarks: the same workloads on LangGraph, checkpointed durably.

Every graph runs with `durability="sync"` (each super-step's checkpoint is written before
the next step starts, as the engine persists each step before the next), on SQLite with
`synchronous=FULL` (WAL, every commit fsyncs) or on PostgreSQL (`synchronous_commit` on).
Each "agent" is a node that calls a zero-latency model stub (or sleeps 300 ms for the
fan-out), like the engine's scripted model. `bench_engine.py` alternates rounds of these
with the engine's and prints the ratios.

Needs the `bench` extra (`pip install -e .[bench]`).
"""

from __future__ import annotations

import asyncio
import contextlib
import operator
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph

LINEAR_STEPS = 10
LOOP_ITERATIONS = 3
BRANCHES = 4
BRANCH_S = 0.3


class Linear(TypedDict, total=False):
    last: str
    n: int


class Loop(TypedDict, total=False):
    patch: str
    review: str
    iteration: int


class FanOut(TypedDict, total=False):
    views: Annotated[list[str], operator.add]
    summary: str


def _model(prompt: str) -> str:
    """The zero-latency model: answers at once, like the engine's scripted provider."""
    return "ok"


def linear_graph(steps: int = LINEAR_STEPS) -> StateGraph:
    builder = StateGraph(Linear)
    previous = START
    for i in range(steps):
        def node(state: Linear, i: int = i) -> Linear:
            return {"last": _model(f"step {i}"), "n": state.get("n", 0) + 1}
        builder.add_node(f"s{i}", node)
        builder.add_edge(previous, f"s{i}")
        previous = f"s{i}"
    builder.add_edge(previous, END)
    return builder


def loop_graph(iterations: int = LOOP_ITERATIONS) -> StateGraph:
    """review → fix: a fixer patches, a reviewer asks for changes, until the iterations run out."""
    builder = StateGraph(Loop)
    builder.add_node("fix", lambda state: {"patch": _model("fix"), "iteration": state.get("iteration", 0) + 1})
    builder.add_node("review", lambda state: {"review": "needs changes"})
    builder.add_edge(START, "fix")
    builder.add_edge("fix", "review")
    builder.add_conditional_edges("review", lambda state: "fix" if state["iteration"] < iterations else END)
    return builder


def fan_out_graph(branches: int = BRANCHES, seconds: float = BRANCH_S) -> StateGraph:
    builder = StateGraph(FanOut)
    names = [f"b{i}" for i in range(branches)]
    for name in names:
        async def branch(state: FanOut) -> FanOut:
            await asyncio.sleep(seconds)
            return {"views": ["view"]}
        builder.add_node(name, branch)
        builder.add_edge(START, name)

    async def join(state: FanOut) -> FanOut:
        return {"summary": _model("join")}

    builder.add_node("join", join)
    builder.add_edge(names, "join")
    builder.add_edge("join", END)
    return builder


def _config() -> dict[str, Any]:
    return {"configurable": {"thread_id": uuid.uuid4().hex}}


@contextlib.contextmanager
def sync_saver(target: str) -> Iterator[Any]:
    """SqliteSaver on `target` (a file path, synchronous=FULL) or PostgresSaver (a postgres:// URL)."""
    if target.startswith("postgres"):
        from langgraph.checkpoint.postgres import PostgresSaver

        with PostgresSaver.from_conn_string(target) as saver:
            saver.setup()
            yield saver
        return
    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(target, check_same_thread=False)
    try:
        saver = SqliteSaver(conn)
        saver.setup()
        conn.execute("PRAGMA synchronous=FULL")
        yield saver
    finally:
        conn.close()


@contextlib.asynccontextmanager
async def async_saver(target: str) -> AsyncIterator[Any]:
    """The async checkpointers (for the fan-out and concurrent runs on one event loop)."""
    if target.startswith("postgres"):
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        async with AsyncPostgresSaver.from_conn_string(target) as saver:
            await saver.setup()
            yield saver
        return
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    conn = await aiosqlite.connect(target)
    try:
        saver = AsyncSqliteSaver(conn)
        await saver.setup()
        await conn.execute("PRAGMA synchronous=FULL")
        yield saver
    finally:
        await conn.close()


class Peer:
    """LangGraph's side of each workload; each method returns seconds of wall time."""

    def __init__(self, target: str):
        self.target = target

    def linear(self, runs: int) -> float:
        """Sequential runs of the 10-step pipeline; returns wall time per step."""
        with sync_saver(self.target) as saver:
            graph = linear_graph().compile(checkpointer=saver)
            graph.invoke({"n": 0}, _config(), durability="sync")  # warm
            started = time.perf_counter()
            for _ in range(runs):
                out = graph.invoke({"n": 0}, _config(), durability="sync")
            elapsed = time.perf_counter() - started
        assert out["n"] == LINEAR_STEPS, out
        return elapsed / (runs * LINEAR_STEPS)

    def loop(self, runs: int) -> float:
        """Sequential runs of review→fix (3 iterations, 6 agent steps); wall time per agent step."""
        with sync_saver(self.target) as saver:
            graph = loop_graph().compile(checkpointer=saver)
            started = time.perf_counter()
            for _ in range(runs):
                out = graph.invoke({"iteration": 0}, _config(), durability="sync")
            elapsed = time.perf_counter() - started
        assert out["iteration"] == LOOP_ITERATIONS, out
        return elapsed / (runs * LOOP_ITERATIONS * 2)

    def concurrent(self, runs: int) -> float:
        """`runs` linear pipelines at once on one event loop; wall time per step."""

        async def main() -> float:
            async with async_saver(self.target) as saver:
                graph = linear_graph().compile(checkpointer=saver)
                await graph.ainvoke({"n": 0}, _config(), durability="sync")
                started = time.perf_counter()
                outs = await asyncio.gather(*(graph.ainvoke({"n": 0}, _config(), durability="sync") for _ in range(runs)))
                elapsed = time.perf_counter() - started
            assert all(o["n"] == LINEAR_STEPS for o in outs)
            return elapsed / (runs * LINEAR_STEPS)

        return asyncio.run(main())

    def fan_out(self, runs: int) -> float:
        """4 x 300 ms branches + join; median wall time of a run over the ideal 300 ms."""

        async def main() -> list[float]:
            async with async_saver(self.target) as saver:
                graph = fan_out_graph().compile(checkpointer=saver)
                times = []
                for _ in range(runs):
                    started = time.perf_counter()
                    out = await graph.ainvoke({"views": []}, _config(), durability="sync")
                    times.append(time.perf_counter() - started)
                    assert out["summary"] == "ok" and len(out["views"]) == BRANCHES, out
            return times

        times = asyncio.run(main())
        return sorted(times)[len(times) // 2] / BRANCH_S

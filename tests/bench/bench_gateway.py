"""Gateway benchmark (TARGETS.md): an echo tool called by an MCP client through the product's
`/mcp` endpoint, against the same client calling the same stdio server directly.

- through /mcp: a real daphne (`config.asgi:application`) in its own process on a fresh
  SQLite database, the SDK's `Client` over streamable HTTP (`httpx2`) with a bearer API key
  granted the Python SDK echo server (tests/fakes/mcp_echo_server.py, stdio) — the whole
  product path: Host check, key, grant, policy, rate limits, upstream session, redaction,
  audit row (batched, see README).
- direct: the SDK's `Client` over stdio to its own instance of the same echo server.
- peer over HTTP: the same client over streamable HTTP to the same echo server served by the
  SDK itself (`tests/fakes/mcp_echo_http.py`, JSON responses) under the same ASGI server, no
  gateway: what HTTP alone adds to the direct call, so the gateway's own share is /mcp minus
  this.

Rounds alternate direct / through at each concurrency: c = 1 (p50 and p99 added latency),
c = 16 and 64 (throughput ratio). Then `server-everything` (TypeScript, npm) through /mcp:
calls/s at c = 16 and 64, from one client process and from two sharing the load (one SDK
client process spends ~1 ms of CPU per call: alone it cannot ask for more than ~1,000
calls/s, whatever answers). Each figure is the median over rounds, with the min-max spread.
A secondary line measures the in-process dispatch path (no HTTP) as before.

The echo tools are marked read-only by the operator (they are: they only say the argument
back), so each call writes one audit row; a side-effecting tool would first commit a
`started` row, which is awaited (see mcpgateway/audit_batch.py).

Run: `.venv/bin/python -m tests.bench.bench_gateway [--rounds N] [--quick]`
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PY_ECHO = [sys.executable, "-m", "tests.fakes.mcp_echo_server"]
EVERYTHING = ["npx", "-y", "@modelcontextprotocol/server-everything"]
TARGETS = {"p50_added_ms": 1.5, "p99_added_ms": 5.0, "ratio": 0.8, "everything_rps": 1000}


def _setup_django(tmp: Path) -> dict[str, str]:
    env = {"SQLITE_PATH": str(tmp / "bench.sqlite3"), "DJANGO_SETTINGS_MODULE": "config.settings",
           "GATEWAY_AUTOSTART": "true", "AGENTDECK_LOG_LEVEL": "WARNING"}
    os.environ.update(env)
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("REDIS_URL", None)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return env


def _seed() -> tuple[str, int]:
    """A team, the two stdio servers (operator-added), a key granted both: (token, team id)."""
    from django.contrib.auth import get_user_model

    from mcpgateway.actions.access import do_create_api_key, do_grant
    from mcpgateway.actions.servers import do_save_server
    from orchestrator.actions import do_create_team

    user = get_user_model().objects.create_user("bench")
    team = do_create_team("Bench", user)
    key, token = do_create_api_key(team.pk, "bench", user)
    for name, argv in (("pyecho", PY_ECHO), ("everything", EVERYTHING)):
        server = do_save_server(team.pk, name, transport="stdio", command=argv[0], args=argv[1:], cwd=str(ROOT),
                                operator=True)
        do_grant(server, api_key=key)
    return token, team.pk


def _wait_for_tools(team_id: int, timeout: float = 120) -> None:
    from mcpgateway.models import Tool

    deadline = time.monotonic() + timeout
    while set(Tool.objects.filter(server__team_id=team_id, name="echo").values_list("server__name", flat=True)) != {
            "pyecho", "everything"}:
        assert time.monotonic() < deadline, "daphne's gateway did not discover both echo tools"
        time.sleep(0.2)
    Tool.objects.filter(server__team_id=team_id, name="echo").update(retry_safe=True)  # read-only, as it is


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVERS = {
    "daphne": lambda port, app="config.asgi:application": ["daphne", "-b", "127.0.0.1", "-p", str(port), app],
    # The same ASGI app under uvicorn with the httptools parser (what daphne's own per-request
    # cost is measured against: see README, "The /mcp path").
    "uvicorn": lambda port, app="config.asgi:application": ["uvicorn", "--host", "127.0.0.1", "--port", str(port), "--http", "httptools",
                             "--timeout-keep-alive", "75", "--no-access-log", "--log-level", "warning",
                             app],
}


def _start_server(server: str, env: dict[str, str], log: Path, app: str | None = None) -> tuple[subprocess.Popen, str]:
    """`server` serving the product (or `app`), once it answers: (process, base URL)."""
    port = _free_port()
    argv = SERVERS[server](port) if app is None else SERVERS[server](port, app)
    proc = subprocess.Popen([str(Path(sys.executable).with_name(argv[0])), *argv[1:]], cwd=ROOT,
                            env={**os.environ, **env}, stdout=log.open("w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if app is None:
                urllib.request.urlopen(f"{base}/healthz", timeout=1)
            else:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, base
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, f"{server} did not start (see {log})"
            time.sleep(0.2)


async def _measure(call, concurrency: int, total: int) -> dict[str, float]:
    latencies: list[float] = []
    queue = iter(range(total))

    async def worker() -> None:
        for i in queue:
            started = time.perf_counter()
            await call(i)
            latencies.append((time.perf_counter() - started) * 1000)

    await asyncio.gather(*(call(-1) for _ in range(min(concurrency, 8))))  # warm up
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {"p50": statistics.median(latencies), "p99": latencies[max(0, int(len(latencies) * 0.99) - 1)],
            "rps": total / elapsed}


def _caller(client, tool: str):
    async def call(i: int) -> None:
        result = await client.call_tool(tool, {"message": f"m{i}"})
        assert not result.is_error, result

    return call


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds a process (daphne) has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _child_pid(parent: int, needle: str) -> int | None:
    """A direct child of `parent` whose command line contains `needle` (Linux /proc)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1]) != parent:
                continue
            if needle in Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode():
                return int(entry)
        except (OSError, ValueError, IndexError):
            continue
    return None


def _group_cpu_s(group: int) -> float:
    """CPU seconds used so far by the live processes of a process group (an npx-started server)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == group:
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _spread(values: list[float], fmt: str = "{:.2f}") -> str:
    return f"{fmt.format(statistics.median(values))} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


async def _bench_http(base: str, token: str, rounds: int, calls: dict[int, int], pid: int,
                      server: str = "daphne", peer: str | None = None) -> list[str]:
    import httpx2
    from mcp import Client, StdioServerParameters
    from mcp.client.streamable_http import streamable_http_client

    url = f"{base}/mcp"
    limits = httpx2.Limits(max_connections=128, max_keepalive_connections=128)
    keys = ("d_p50", "d_p99", "g_p50", "g_p99", "d_rps", "g_rps", "add50", "add99", "ratio", "cpu", "client_cpu",
            "p_p50", "p_rps", "p_add50", "p_ratio", "own50", "d_cpu", "d_up_cpu", "g_up_cpu", "ceiling")
    per_c: dict[int, dict[str, list[float]]] = {c: {k: [] for k in keys} for c in calls}
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {token}"}, timeout=60, limits=limits))
        through = await stack.enter_async_context(Client(streamable_http_client(url, http_client=http)))
        direct = await stack.enter_async_context(Client(StdioServerParameters(command=PY_ECHO[0], args=PY_ECHO[1:],
                                                                              cwd=str(ROOT))))
        over_http = None
        if peer is not None:
            plain = await stack.enter_async_context(httpx2.AsyncClient(timeout=60, limits=limits))
            over_http = await stack.enter_async_context(Client(streamable_http_client(f"{peer}/mcp", http_client=plain)))
        assert "pyecho__echo" in [t.name for t in (await through.list_tools()).tools], "echo not granted"
        # The two echo servers' processes: the one this client spawned, the one the gateway did.
        direct_echo, gateway_echo = _child_pid(os.getpid(), "mcp_echo_server"), _child_pid(pid, "mcp_echo_server")
        assert direct_echo and gateway_echo, "echo server processes not found"
        cores = os.cpu_count() or 1
        for r in range(rounds):
            for c, n in calls.items():
                sides = [("d", _caller(direct, "echo")), ("g", _caller(through, "pyecho__echo"))]
                if over_http is not None:
                    sides.insert(1, ("p", _caller(over_http, "echo")))
                if r % 2:
                    sides.reverse()  # alternate which side goes first
                got = {}
                for side, call in sides:
                    cpu, own = _cpu_s(pid), _cpu_s(os.getpid())
                    up = _cpu_s(direct_echo if side == "d" else gateway_echo)
                    got[side] = await _measure(call, c, n)
                    own_ms = (_cpu_s(os.getpid()) - own) * 1000 / n
                    up_ms = (_cpu_s(direct_echo if side == "d" else gateway_echo) - up) * 1000 / n
                    if side == "g":
                        per_c[c]["cpu"].append((_cpu_s(pid) - cpu) * 1000 / n)
                        per_c[c]["client_cpu"].append(own_ms)
                        per_c[c]["g_up_cpu"].append(up_ms)
                    elif side == "d":
                        per_c[c]["d_cpu"].append(own_ms)
                        per_c[c]["d_up_cpu"].append(up_ms)
                d, g, row = got["d"], got["g"], per_c[c]
                row["d_p50"].append(d["p50"])
                row["d_p99"].append(d["p99"])
                row["g_p50"].append(g["p50"])
                row["g_p99"].append(g["p99"])
                row["d_rps"].append(d["rps"])
                row["g_rps"].append(g["rps"])
                row["add50"].append(g["p50"] - d["p50"])
                row["add99"].append(g["p99"] - d["p99"])
                row["ratio"].append(g["rps"] / d["rps"])
                # What a gateway costing no CPU at all could reach on this machine: the cores
                # divided by the CPU the client and the upstream spend per call through /mcp.
                row["ceiling"].append(cores * 1000 / (row["client_cpu"][-1] + row["g_up_cpu"][-1]) / d["rps"])
                if "p" in got:
                    p = got["p"]
                    row["p_p50"].append(p["p50"])
                    row["p_rps"].append(p["rps"])
                    row["p_add50"].append(p["p50"] - d["p50"])
                    row["p_ratio"].append(p["rps"] / d["rps"])
                    row["own50"].append(g["p50"] - p["p50"])
    name = server.split(",")[0]  # the ASGI server, without the label's configuration
    lines = [f"gateway /mcp ({server}, SDK streamable-HTTP client, bearer key) vs direct stdio, Python SDK echo server; "
             f"median [min-max] over {rounds} alternating rounds"]
    for c, row in per_c.items():
        lines.append(f"  c={c:<3} direct p50 {_spread(row['d_p50'])} ms p99 {_spread(row['d_p99'])} ms "
                     f"{_spread(row['d_rps'], '{:.0f}')}/s | /mcp p50 {_spread(row['g_p50'])} ms "
                     f"p99 {_spread(row['g_p99'])} ms {_spread(row['g_rps'], '{:.0f}')}/s; "
                     f"CPU/call: {name} {_spread(row['cpu'])} ms, this client {_spread(row['client_cpu'])} ms")
        if c == 1:
            a50, a99 = statistics.median(row["add50"]), statistics.median(row["add99"])
            lines.append(f"         added p50 {_spread(row['add50'])} ms (target <= +{TARGETS['p50_added_ms']} ms: "
                         f"{'met' if a50 <= TARGETS['p50_added_ms'] else 'NOT met'}), "
                         f"p99 {_spread(row['add99'])} ms (target <= +{TARGETS['p99_added_ms']} ms: "
                         f"{'met' if a99 <= TARGETS['p99_added_ms'] else 'NOT met'})")
        else:
            ratio = statistics.median(row["ratio"])
            lines.append(f"         throughput ratio {_spread(row['ratio'])}x (target >= {TARGETS['ratio']}x: "
                         f"{'met' if ratio >= TARGETS['ratio'] else 'NOT met'}); CPU/call direct: client "
                         f"{_spread(row['d_cpu'])} ms, echo {_spread(row['d_up_cpu'])} ms; through /mcp: echo "
                         f"{_spread(row['g_up_cpu'])} ms; a gateway costing no CPU could reach at most "
                         f"{_spread(row['ceiling'])}x direct on {cores} cores (HTTP client + echo CPU)")
        if row["p_p50"]:
            lines.append(f"         no gateway, the SDK's own HTTP server ({name}): p50 {_spread(row['p_p50'])} ms "
                         f"(HTTP alone adds {_spread(row['p_add50'])} ms over stdio), {_spread(row['p_rps'], '{:.0f}')}/s "
                         f"= {_spread(row['p_ratio'])}x direct; the gateway's own share of /mcp p50: "
                         f"{_spread(row['own50'])} ms")
    return lines


async def _bench_everything(base: str, token: str, rounds: int, calls: dict[int, int], pid: int) -> list[str]:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    limits = httpx2.Limits(max_connections=128, max_keepalive_connections=128)
    lines = ["gateway /mcp with server-everything (TypeScript, stdio upstream): calls/s through /mcp"]
    group = _child_pid(pid, "server-everything")  # the gateway starts each stdio server in its own group
    assert group, "server-everything's process not found"
    cores = os.cpu_count() or 1
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60, limits=limits) as http, \
            Client(streamable_http_client(f"{base}/mcp", http_client=http)) as through:
        for c, n in calls.items():
            if c == 1:
                continue
            rps, gateway, client, upstream, ceiling = [], [], [], [], []
            for _ in range(rounds):
                before = _cpu_s(pid), _cpu_s(os.getpid()), _group_cpu_s(group)
                rps.append((await _measure(_caller(through, "everything__echo"), c, n))["rps"])
                gateway.append((_cpu_s(pid) - before[0]) * 1000 / n)
                client.append((_cpu_s(os.getpid()) - before[1]) * 1000 / n)
                upstream.append((_group_cpu_s(group) - before[2]) * 1000 / n)
                ceiling.append(cores * 1000 / (client[-1] + upstream[-1]))
            verdict = "met" if statistics.median(rps) >= TARGETS["everything_rps"] else "NOT met"
            lines.append(f"  c={c:<3} {_spread(rps, '{:.0f}')} calls/s (target >= {TARGETS['everything_rps']}/s: {verdict}); "
                         f"CPU/call: gateway {_spread(gateway)} ms, this client {_spread(client)} ms, server-everything "
                         f"{_spread(upstream)} ms; a gateway costing no CPU could reach at most "
                         f"{_spread(ceiling, '{:.0f}')}/s on {cores} cores")
    return lines


async def _client_worker(base: str, token: str, tool: str, concurrency: int, total: int) -> None:
    """One load-generating process (`--client-worker`): connects, prints `ready`, waits for a
    line on stdin, makes `total` calls at `concurrency`, prints what it did as JSON."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    limits = httpx2.Limits(max_connections=128, max_keepalive_connections=128)
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60, limits=limits) as http, \
            Client(streamable_http_client(f"{base}/mcp", http_client=http)) as through:
        await _caller(through, tool)(-1)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        started, cpu = time.time(), _cpu_s(os.getpid())
        await _measure(_caller(through, tool), concurrency, total)
        print(json.dumps({"started": started, "ended": time.time(), "calls": total,
                          "cpu_s": _cpu_s(os.getpid()) - cpu}), flush=True)


def _two_clients(base: str, token: str, tool: str, concurrency: int, total: int, pid: int) -> dict[str, float]:
    """`total` calls from two client processes at once, `concurrency` split between them: calls/s
    over the span from the first start to the last end, and CPU per call of the gateway and of
    the clients. One SDK client process spends ~1 ms of CPU per call, so alone it cannot ask
    for more than ~1,000 calls/s whatever serves them."""
    argv = [sys.executable, __file__, "--client-worker", base, token, tool, str(concurrency // 2), str(total // 2)]
    workers = [subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)}) for _ in range(2)]
    try:
        for worker in workers:
            assert worker.stdout.readline().strip() == "ready", "a client worker did not start"
        before = _cpu_s(pid)
        for worker in workers:
            worker.stdin.write("go\n")
            worker.stdin.flush()
        done = [json.loads(worker.stdout.readline()) for worker in workers]
        gateway = _cpu_s(pid) - before
    finally:
        for worker in workers:
            worker.stdin.close()
            worker.wait(timeout=60)
    calls = sum(d["calls"] for d in done)
    span = max(d["ended"] for d in done) - min(d["started"] for d in done)
    return {"rps": calls / span, "gateway_ms": gateway * 1000 / calls,
            "clients_ms": sum(d["cpu_s"] for d in done) * 1000 / calls}


def _bench_everything_two_clients(base: str, token: str, rounds: int, calls: dict[int, int], pid: int) -> list[str]:
    lines = ["  the same with two client processes (the load split between them; what one client process "
             "cannot ask for, see above):"]
    for c, n in calls.items():
        if c == 1:
            continue
        got = [_two_clients(base, token, "everything__echo", c, n, pid) for _ in range(rounds)]
        rps = [g["rps"] for g in got]
        verdict = "met" if statistics.median(rps) >= TARGETS["everything_rps"] else "NOT met"
        lines.append(f"  c={c:<3} {_spread(rps, '{:.0f}')} calls/s (target >= {TARGETS['everything_rps']}/s: {verdict}); "
                     f"CPU/call: gateway {_spread([g['gateway_ms'] for g in got])} ms, the two clients "
                     f"{_spread([g['clients_ms'] for g in got])} ms")
    return lines


async def _bench_inprocess(team_id: int, n: int) -> list[str]:
    """Secondary: the dispatch path alone (no HTTP), as the engine calls it."""
    from mcp import Client, StdioServerParameters

    from mcpgateway.dispatch import Gateway
    from mcpgateway.runtime import get_runtime
    from mcpgateway.types import Principal, ToolInvocation

    runtime = get_runtime()
    await runtime.sync()
    await runtime.ready()
    gateway, principal = Gateway(team_id), Principal(team_id=team_id, agent="bench")
    from asgiref.sync import sync_to_async

    from mcpgateway.actions.access import do_grant
    from mcpgateway.models import ToolServer

    await sync_to_async(lambda: do_grant(ToolServer.objects.get(team_id=team_id, name="pyecho"), agent="bench"))()
    deadline = time.monotonic() + 60
    while "pyecho__echo" not in [t.name for t in await gateway.list_tools(principal)]:
        assert time.monotonic() < deadline, "in-process gateway did not discover pyecho"
        await asyncio.sleep(0.2)

    async def through(i: int) -> None:
        result = await gateway.call_tool(ToolInvocation(principal, "pyecho__echo", {"message": f"m{i}"}, call_id=str(i)))
        assert not result.is_error, result.content

    async with Client(StdioServerParameters(command=PY_ECHO[0], args=PY_ECHO[1:], cwd=str(ROOT))) as direct:
        d = await _measure(_caller(direct, "echo"), 16, n)
    g = await _measure(through, 16, n)
    await runtime.stop()
    return [f"secondary: in-process dispatch (run path, audit awaited), c=16: {g['rps']:.0f}/s vs direct {d['rps']:.0f}/s "
            f"({g['rps'] / d['rps']:.2f}x), p50 {g['p50']:.2f} ms vs {d['p50']:.2f} ms"]


def main() -> int:
    if sys.argv[1:2] == ["--client-worker"]:
        base, token, tool, concurrency, total = sys.argv[2:7]
        asyncio.run(_client_worker(base, token, tool, int(concurrency), int(total)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="fewer calls per measurement")
    parser.add_argument("--no-inprocess", action="store_true")
    parser.add_argument("--server", choices=sorted(SERVERS), default="daphne", help="the ASGI server in front of /mcp")
    parser.add_argument("--on-server-loop", action="store_true",
                        help="GATEWAY_ON_SERVER_LOOP=true: the gateway's upstream sessions on the server's own loop")
    args = parser.parse_args()
    calls = {1: 200, 16: 800, 64: 1600} if args.quick else {1: 400, 16: 1600, 64: 3200}
    tmp = Path(tempfile.mkdtemp(prefix="agentdeck-gw-bench-"))
    env = _setup_django(tmp)
    token, team_id = _seed()
    label = f"{args.server}, gateway on the server's loop" if args.on_server_loop else args.server
    proc, base = _start_server(args.server, {**env, "GATEWAY_ON_SERVER_LOOP": str(args.on_server_loop).lower()},
                               tmp / f"{args.server}.log")
    peer, peer_base = _start_server(args.server, env, tmp / f"{args.server}-peer.log", app="tests.fakes.mcp_echo_http:app")
    try:
        _wait_for_tools(team_id)
        time.sleep(1.5)  # daphne's catalogue snapshot (TTL 1 s) sees the read-only marks
        lines = asyncio.run(_bench_http(base, token, args.rounds, calls, proc.pid, label, peer_base))
        lines += asyncio.run(_bench_everything(base, token, args.rounds, calls, proc.pid))
        lines += _bench_everything_two_clients(base, token, args.rounds, calls, proc.pid)
    finally:
        for server_proc in (proc, peer):
            server_proc.terminate()
            try:
                server_proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server_proc.kill()
    from mcpgateway.models import AuditEntry

    lines.append(f"  audit rows written by {args.server} (flushed at its stop): {AuditEntry.objects.count()}")
    if not args.no_inprocess:
        from mcpgateway.background import submit

        lines += submit(_bench_inprocess(team_id, calls[16])).result(timeout=600)
    print("\n".join(lines))
    print(f"  targets: added p50 <= +{TARGETS['p50_added_ms']} ms and p99 <= +{TARGETS['p99_added_ms']} ms at c=1; "
          f"throughput >= {TARGETS['ratio']}x direct at c=16, 64 (Python echo); >= {TARGETS['everything_rps']} calls/s "
          "through /mcp with server-everything")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Memory of the web process after start, idle (TARGETS.md: <= 250 MB RSS).

Starts daphne on a free port with the app, waits until it answers, loads one page, then
reads the process's resident set size from /proc.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="agentdeck-mem-"))
    env = {**os.environ, "SQLITE_PATH": str(tmp / "mem.sqlite3")}
    env.pop("DATABASE_URL", None)
    python = sys.executable
    subprocess.run([python, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    port = _free_port()
    daphne = str(Path(python).with_name("daphne"))
    proc = subprocess.Popen([daphne, "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        urllib.request.urlopen(f"http://127.0.0.1:{port}/schemas/pipeline-spec.json", timeout=5).read()
        time.sleep(1)
        rss_kb = int(next(line for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
                          if line.startswith("VmRSS")).split()[1])
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    rss_mb = rss_kb / 1024
    print("memory: web process (daphne) after start, idle")
    print(f"  RSS {rss_mb:.1f} MB, target 250 MB, ratio {rss_mb / 250:.2f}x of the budget")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A SQLite file named by DATABASE_URL runs with the embedded default's settings: WAL,
full fsync, a busy timeout and IMMEDIATE transactions (else concurrent writers fail with
"database is locked")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROBE = """
import json, threading, django
django.setup()
from django.db import connection, transaction
from django.conf import settings
with connection.cursor() as c:
    mode = c.execute("PRAGMA journal_mode").fetchone()[0]
    sync = c.execute("PRAGMA synchronous").fetchone()[0]
    busy = c.execute("PRAGMA busy_timeout").fetchone()[0]
    c.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER)")
errors = []
def write():
    from django.db import connection as conn
    try:
        for _ in range(25):
            with transaction.atomic():
                with conn.cursor() as c:
                    c.execute("SELECT COUNT(*) FROM t")
                    c.execute("INSERT INTO t VALUES (1)")
    except Exception as exc:
        errors.append(repr(exc))
    finally:
        conn.close()
threads = [threading.Thread(target=write) for _ in range(4)]
[t.start() for t in threads]; [t.join() for t in threads]
print(json.dumps({"mode": mode, "sync": sync, "busy": busy, "errors": errors,
                  "tx": settings.DATABASES["default"]["OPTIONS"].get("transaction_mode")}))
"""


def test_it_gives_a_sqlite_database_url_the_embedded_defaults(tmp_path: Path):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "DJANGO_SETTINGS_MODULE": "config.settings"}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["mode"] == "wal"
    assert got["sync"] == 2  # FULL
    assert got["busy"] == 10000
    assert got["tx"] == "IMMEDIATE"
    assert got["errors"] == []

"""A process whose exit waits for a thread (a request's thread under daphne, a pool's) keeps
its periodic background tasks from failing every few seconds meanwhile: once the exit starts,
thread pools refuse new work, and the webhook sender, which hands each round to one, stops
with one line instead of logging the refusal as a failure every round."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import os, sys, threading, time
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
os.environ["SQLITE_PATH"] = sys.argv[1]
os.environ.pop("DATABASE_URL", None)
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from orchestrator import webhooks
webhooks.start_sender(interval_s=0.05)
time.sleep(0.5)  # rounds while the process lives: nothing to send, nothing logged
threading.Thread(target=time.sleep, args=(1.5,)).start()  # the exit waits for this thread
print("exiting", flush=True)
"""


def test_the_webhook_sender_stops_quietly_while_the_exit_waits_for_a_thread(tmp_path):
    done = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "db.sqlite3")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "exiting" in done.stdout
    assert "webhook sender failed" not in done.stderr, done.stderr[-3000:]
    # (the project's logging writes JSON lines to stderr)
    assert done.stderr.count("webhook sender stopped: the process is exiting") == 1, done.stderr[-3000:]

"""The engine is a library: importing any of its modules loads no Django, Celery, `config/`,
model providers or ORM models (CONVENTIONS.md: "The engine is a library")."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import orchestrator.engine

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("django", "celery", "kombu", "channels", "config", "orchestrator.providers", "orchestrator.models",
             "orchestrator.store", "orchestrator.execution", "mcpgateway.models", "mcpgateway.dispatch")

PROBE = """
import importlib, json, os, pkgutil, sys
os.environ.pop("DJANGO_SETTINGS_MODULE", None)
import orchestrator.engine as engine
names = ["orchestrator.engine." + m.name for m in pkgutil.iter_modules(engine.__path__)]
for name in names:
    importlib.import_module(name)
print(json.dumps({"imported": names, "loaded": sorted(sys.modules)}))
"""


def test_it_imports_every_engine_module_without_django_celery_or_config():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    expected = {"orchestrator.engine." + m.name for m in pkgutil.iter_modules(orchestrator.engine.__path__)}
    assert set(report["imported"]) == expected and "orchestrator.engine.executor" in expected
    leaked = [m for m in report["loaded"] if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert leaked == [], f"engine modules pulled in: {leaked[:20]}"

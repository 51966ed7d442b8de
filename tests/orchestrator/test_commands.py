"""The CLI: seed the demo, run a pipeline with live progress, resume a paused run."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from orchestrator.models import Run

pytestmark = pytest.mark.django_db(transaction=True)


def _call(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_it_seeds_the_demo_and_prints_the_login():
    out = _call("seed_demo")
    assert "Admin login: admin / " in out
    assert "agents use: scripted" in out
    again = _call("seed_demo")  # idempotent
    assert again.splitlines()[-1] == out.splitlines()[-1]


def test_it_runs_a_pipeline_printing_progress_and_outputs():
    _call("seed_demo")
    out = _call("run_pipeline", "code-review", "--input", '{"task": "add"}')

    assert "coder#1" in out and "step.succeeded" in out and "loop.iteration" in out
    assert "status: succeeded" in out
    outputs = json.loads(out[out.index("{"):])
    assert outputs["code"].startswith("def add")
    assert Run.objects.get().status == "succeeded"


def test_it_takes_key_value_input_and_streams_text():
    _call("seed_demo")
    out = _call("run_pipeline", "market-analysis", "--input", "ticker=ACME", "--stream")
    assert "Recommendation: HOLD" in out


def test_it_rejects_bad_input_clearly():
    _call("seed_demo")
    with pytest.raises(CommandError, match="input 'task' is required"):
        _call("run_pipeline", "code-review")
    with pytest.raises(CommandError, match="not valid JSON"):
        _call("run_pipeline", "code-review", "--input", "{nope")
    with pytest.raises(CommandError, match="no pipeline 'ghost'"):
        _call("run_pipeline", "ghost")
    assert not Run.objects.exists()

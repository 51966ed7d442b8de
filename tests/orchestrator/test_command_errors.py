"""Management commands on bad input: a CommandError naming the problem, never a traceback (found by a review)."""
from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.conftest import pipeline, scripted

pytestmark = pytest.mark.django_db

SPEC = {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "hi"}]}


def clean_error(*args) -> str:
    try:
        call_command(*args)
    except CommandError as exc:
        return str(exc)
    except BaseException as exc:
        pytest.fail(f"`manage.py {' '.join(args)}` crashed with {type(exc).__name__}: {exc!r} instead of a CommandError")
    pytest.fail("no error")


def test_run_pipeline_with_an_unknown_version(team):
    scripted(team, "w", {"text": "ok"})
    pipeline(team, SPEC, name="demo-pipe")
    assert "version" in clean_error("run_pipeline", "demo-pipe", "--pipeline-version", "9")


def test_run_pipeline_with_a_superscript_id(team):
    assert "pipeline" in clean_error("run_pipeline", "²")


def test_eval_import_of_a_missing_file(team):
    assert "no-such-suite.yaml" in clean_error("eval", "import", "/nonexistent/no-such-suite.yaml", "--team", team.slug)


def test_eval_import_with_a_nan_in_a_case(team, tmp_path):
    scripted(team, "adder", {"text": "5"})
    path = tmp_path / "suite.yaml"
    path.write_text("suite: s\nname: S\ntarget: {agent: adder}\ncases:\n  - name: c\n    input: {prompt: x, due: .nan}\n")
    assert "cases.0.input" in clean_error("eval", "import", str(path), "--team", team.slug)

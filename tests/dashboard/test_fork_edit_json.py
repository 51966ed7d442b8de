# Found by an outside review (2026-12-07, the live pages); failed before its fix.
"""Review: the run page's fork form accepts an edited JSON output with NaN / Infinity / 1e400,
which no database stores as JSON: a 500 instead of the page's "not valid JSON" message."""
from __future__ import annotations

import pytest
from django.test import Client

from orchestrator.models import Run
from tests.conftest import execute, pipeline, scripted, start

pytestmark = pytest.mark.django_db(transaction=True)

SPEC = {"steps": [{"kind": "agent", "id": "one", "agent": "w", "prompt": "one", "output_format": "json"},
                  {"kind": "agent", "id": "two", "agent": "w", "prompt": "two {{ steps.one.output }}"}]}


@pytest.fixture
def no_submit(monkeypatch):
    from orchestrator.runners.inline import InlineRunner

    monkeypatch.setattr(InlineRunner, "submit", lambda self, run_id: None)


@pytest.mark.parametrize("text", ['{"score": NaN}', '{"score": 1e400}', "Infinity", "[" * 100_000 + "]" * 100_000],
                         ids=["nan", "1e400", "infinity", "100k-deep"])
def test_fork_with_a_non_finite_edited_output_is_refused_not_a_500(team, owner, no_submit, text):
    scripted(team, "w", {"text": '{"score": 1}'})
    run = execute(start(pipeline(team, SPEC)))
    assert run.status == "succeeded"
    client = Client(raise_request_exception=False)
    client.force_login(owner)

    response = client.post(f"/runs/{run.pk}/fork/", {"step": "one", "edit": "1", "output": text})

    assert response.status_code in (302, 400), f"fork with edited output {text[:40]!r} answered {response.status_code}"
    assert not Run.objects.exclude(pk=run.pk).exists(), "a run was forked with a non-finite output"

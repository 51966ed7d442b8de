"""The observability page keeps a review gate's wait out of step latency (shown apart, by
reason) and folds eval runs' internal agents and pipelines into one "evals" series."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from orchestrator.actions import do_decide_review
from orchestrator.evals.harness import do_create_eval_run, execute_eval_run
from orchestrator.evals.suite_files import do_import_suite
from orchestrator.models import ReviewItem, StepRun
from tests.conftest import execute, run_spec, scripted
from tests.orchestrator.evals.test_eval_runs import SUITE, adder

pytestmark = pytest.mark.django_db(transaction=True)


def _data(owner) -> dict:
    client = Client()
    client.force_login(owner)
    page = client.get("/observability/?days=7").content.decode()
    return json.loads(page.split('id="observability-data" type="application/json">')[1].split("</script>")[0])


def test_it_shows_review_waits_apart_from_step_latency(team, owner):
    scripted(team, "writer", {"text": "draft"})
    run = run_spec(team, {"steps": [
        {"kind": "agent", "id": "draft", "agent": "writer", "prompt": "p"},
        {"kind": "review", "id": "gate", "instructions": "ok?", "show": "{{ steps.draft.output }}"}]})
    item = run.review_items.get()
    do_decide_review(item, owner, "approve", submit=False)
    execute(run)
    hour_ago = timezone.now() - timedelta(hours=1)
    ReviewItem.objects.filter(pk=item.pk).update(created_at=hour_ago)
    StepRun.objects.filter(run=run, key="gate").update(started_at=hour_ago)

    data = _data(owner)

    assert "review" not in data["step_latency"]["labels"] and "agent" in data["step_latency"]["labels"]
    waits = dict(zip(data["review_wait"]["labels"], data["review_wait"]["p50"], strict=True))
    assert waits["gate"] >= 3_600_000 * 0.99


def test_it_folds_eval_runs_into_one_series(team, owner, gateway_runtime):
    adder(team)
    suite = do_import_suite(team, SUITE)
    for label in ("a", "b"):
        asyncio.run(execute_eval_run(do_create_eval_run(suite, label=label).pk))

    data = _data(owner)

    agents = {s["label"] for s in data["cost_by_agent"]}
    pipelines = {s["label"] for s in data["cost_by_pipeline"]}
    assert agents == {"evals"}, agents
    assert pipelines == {"evals"}, pipelines
    assert not any("--eval" in name for name in agents | pipelines)

# Found by an outside review (2026-12-07, webhooks, streams and traces); failed before its fix.
"""A trace exported while its run is still writing events does not verify: `export_trace`
reads the run's chain head (the view's `Run` fetch) and its events in separate queries, outside
one snapshot, so an event committed in between ends up in `events` but not in `chain_head`, and
`POST /traces/verify` reports the instance's own, untouched export as truncated or edited."""

from __future__ import annotations

import json
import threading

import pytest
from django.db import connection, transaction
from django.test import Client

from mcpgateway.actions.access import do_create_api_key
from orchestrator.events import send_event_on_commit
from orchestrator.models import Run
from tests.conftest import pipeline, scripted, start

pytestmark = [pytest.mark.django_db(transaction=True)]
SPEC = {"steps": [{"kind": "agent", "id": "work", "agent": "w", "prompt": "go"}]}


def test_a_trace_exported_while_its_run_writes_events_verifies(team, owner):
    scripted(team, "w", {"text": "done"})
    run = start(pipeline(team, SPEC))
    _, token = do_create_api_key(team.pk, "k", owner, scopes=["read", "run"])
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    stop = threading.Event()

    def writer() -> None:  # the run's worker, appending its events (one commit each)
        try:
            row = Run.objects.get(pk=run.pk)
            while not stop.is_set():
                with transaction.atomic():
                    send_event_on_commit(row, "step.progress", {"n": 1}, step_key="work")
        finally:
            connection.close()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    client, failures, exports = Client(), [], 0
    try:
        for _ in range(60):
            response = client.get(f"/api/v1/runs/{run.pk}/trace", **auth)
            assert response.status_code == 200
            exports += 1
            report = client.post("/api/v1/traces/verify", data=response.content, content_type="application/json", **auth)
            assert report.status_code == 200
            if not report.json()["ok"]:
                failures.append(report.json()["problems"])
            if len(failures) >= 3:
                break
    finally:
        stop.set()
        thread.join(10)
    assert not failures, (f"{len(failures)} of {exports} untouched exports of a running run did not verify, e.g. "
                          f"{json.dumps(failures[0])}")

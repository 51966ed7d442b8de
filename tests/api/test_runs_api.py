"""Runs over the REST API: start (idempotently), read, events paged and streamed, cancel, resume."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient

from orchestrator.events import event_payload, verify_chain
from orchestrator.models import Run, RunEvent
from tests.conftest import execute, pipeline

pytestmark = pytest.mark.django_db(transaction=True)

SPEC = {"inputs": {"topic": {"type": "string"}},
        "steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "{{ input.topic }}"},
                  {"kind": "agent", "id": "b", "agent": "w", "prompt": "again"}]}


@pytest.fixture
def pipe(keys):
    return pipeline(keys["team"], SPEC)


def test_it_starts_a_run_once_per_idempotency_key(api, keys, pipe, monkeypatch):
    from orchestrator.runners.inline import InlineRunner

    monkeypatch.setattr(InlineRunner, "submit", lambda self, run_id: None)  # keep it queued; we only count runs
    body = {"pipeline": pipe.pk, "input": {"topic": "x"}}

    first = api.call("post", "/runs", keys["builder"], body, HTTP_IDEMPOTENCY_KEY="k-1")
    again = api.call("post", "/runs", keys["builder"], body, HTTP_IDEMPOTENCY_KEY="k-1")
    changed = api.call("post", "/runs", keys["builder"], {**body, "input": {"topic": "y"}}, HTTP_IDEMPOTENCY_KEY="k-1")
    other_key = api.call("post", "/runs", keys["builder"], body, HTTP_IDEMPOTENCY_KEY="k-2")

    assert first[0] == 201 and again[0] == 200
    assert first[1]["id"] == again[1]["id"]
    assert changed[0] == 409 and changed[1]["error"]["field"] == "Idempotency-Key"
    assert other_key[0] == 201 and other_key[1]["id"] != first[1]["id"]
    assert Run.objects.count() == 2


def test_it_validates_run_input_with_the_field(api, keys, pipe):
    status, body = api.call("post", "/runs", keys["builder"], {"pipeline": pipe.pk, "input": {}})
    assert status == 400
    assert body["error"] == {"code": "invalid", "message": "input 'topic' is required", "field": "input.topic"}
    status, body = api.call("post", "/runs", keys["builder"], {"pipeline": "nope"})
    assert status == 422 and body["error"]["field"] == "pipeline"


def test_it_pages_a_runs_events_in_order(api, keys, pipe):
    from orchestrator.actions import do_start_run

    run = execute(do_start_run(pipe.latest_version(), {"topic": "t"}, submit=False))
    seen, after = [], 0
    while after is not None:
        status, page = api.call("get", f"/runs/{run.pk}/events?after={after}&limit=3", keys["viewer"])
        assert status == 200
        seen += page["events"]
        after = page["next_after"]
    assert [e["seq"] for e in seen] == list(range(1, RunEvent.objects.filter(run=run).count() + 1))
    status, steps = api.call("get", f"/runs/{run.pk}/steps", keys["viewer"])
    assert [s["key"] for s in steps] == ["a", "b"]


def test_it_streams_a_runs_events_as_server_sent_events(keys, pipe):
    from orchestrator.actions import do_start_run

    run = execute(do_start_run(pipe.latest_version(), {"topic": "t"}, submit=False))

    async def read() -> str:
        response = await AsyncClient().get(f"/api/v1/runs/{run.pk}/events/stream?after=2",
                                           headers={"Authorization": f"Bearer {keys['viewer']}"})
        assert response["Content-Type"] == "text/event-stream"
        return "".join([chunk.decode() if isinstance(chunk, bytes) else chunk async for chunk in response.streaming_content])

    text = async_to_sync(read)()
    frames = [f for f in text.split("\n\n") if f.startswith("id:")]
    payloads = [json.loads(f.split("data: ", 1)[1]) for f in frames]
    assert [p["seq"] for p in payloads] == list(range(3, RunEvent.objects.filter(run=run).count() + 1))
    assert payloads[-1]["type"] == "run.succeeded"
    for p in payloads:
        p["prev_hash"] = RunEvent.objects.get(run=run, seq=p["seq"]).prev_hash
    first_two = [{**event_payload(e), "prev_hash": e.prev_hash} for e in RunEvent.objects.filter(run=run, seq__lte=2).order_by("seq")]
    assert verify_chain(first_two + payloads).ok


def test_it_cancels_and_resumes(api, keys, pipe):
    from orchestrator.actions import do_start_run

    gated = pipeline(keys["team"], {"steps": [{"kind": "review", "id": "g", "instructions": "ok?"}]}, name="gated")
    run = execute(do_start_run(gated.latest_version(), {}, submit=False))
    status, body = api.call("post", f"/runs/{run.pk}/resume", keys["builder"])
    assert status == 409 and "undecided" in body["error"]["message"]
    status, body = api.call("post", f"/runs/{run.pk}/cancel", keys["builder"])
    assert status == 200 and body["status"] == "cancelled"
    status, body = api.call("post", f"/runs/{run.pk}/cancel", keys["builder"])
    assert status == 409


def test_an_unknown_status_filter_is_refused_not_an_empty_list(api, keys):
    # Found by an outside review (2026-12-07, the API): a typo listed nothing, as if no run had it.
    status, body = api.call("get", "/runs?status=sucess", keys["builder"])
    assert status == 400 and body["error"]["field"] == "status" and "succeeded" in body["error"]["message"], body
    assert api.call("get", "/runs?status=succeeded", keys["builder"])[0] == 200
    status, body = api.call("get", "/reviews?status=open", keys["builder"])
    assert status == 400 and body["error"]["field"] == "status" and "pending" in body["error"]["message"], body

"""Every run's events form a hash chain that verifies; any tampering is detected."""

from __future__ import annotations

import json

import pytest

from orchestrator.events import verify_chain
from orchestrator.models import RunEvent
from tests.conftest import run_spec, scripted

pytestmark = pytest.mark.django_db(transaction=True)

SPEC = {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "go"}, {"kind": "agent", "id": "b", "agent": "w", "prompt": "again"}]}


@pytest.fixture
def finished_run(team):
    scripted(team, "w", {"text": "done"})
    return run_spec(team, SPEC)


def _events(run):
    return list(RunEvent.objects.filter(run=run).order_by("seq"))


def test_it_verifies_the_chain_of_a_finished_run(finished_run):
    events = _events(finished_run)
    report = verify_chain(events)
    assert report.ok and report.count == len(events) >= 8
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[0].type == "run.queued" and events[-1].type == "run.succeeded"


def test_it_detects_an_altered_event(finished_run):
    victim = RunEvent.objects.get(run=finished_run, type="step.succeeded", step_key="a")
    RunEvent.objects.filter(pk=victim.pk).update(data={**victim.data, "output": "forged"})

    report = verify_chain(_events(finished_run))

    assert not report.ok
    assert report.first_broken_seq == victim.seq
    assert "altered" in report.reason


def test_it_detects_a_removed_event(finished_run):
    victim = _events(finished_run)[3]
    victim.delete()

    report = verify_chain(_events(finished_run))

    assert not report.ok and report.first_broken_seq == victim.seq + 1


def test_it_detects_a_rehashed_forgery(finished_run):
    """Recomputing a forged event's own hash does not help: the next link breaks."""
    from orchestrator.events import event_hash

    events = _events(finished_run)
    victim = events[4]
    forged = {**victim.data, "output": "forged"}
    new_hash = event_hash(victim.prev_hash, victim.seq, victim.type, victim.step_key, forged, victim.created_at.isoformat(timespec="microseconds"))
    RunEvent.objects.filter(pk=victim.pk).update(data=forged, hash=new_hash)

    report = verify_chain(_events(finished_run))

    assert not report.ok and report.first_broken_seq == victim.seq + 1


def test_it_round_trips_events_through_json(finished_run):
    from orchestrator.events import event_payload

    payloads = [json.loads(json.dumps(event_payload(e))) for e in _events(finished_run)]
    for payload, event in zip(payloads, _events(finished_run), strict=True):
        payload["prev_hash"] = event.prev_hash
    assert verify_chain(payloads).ok

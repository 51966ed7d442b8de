"""An unaltered trace verifies whatever numbers and keys its events hold. PostgreSQL's `jsonb`
stores 1e16 as the integer it denotes, -0.0 as 0.0 and every key as text (sorted its own way),
so hashing Python's own JSON text of such data made the chain of an untouched run fail on
PostgreSQL (a review found it). The hashed text is now the stored form on both databases;
chains and signed traces made before still verify."""

from __future__ import annotations

import base64
import json

import pytest
from asgiref.sync import async_to_sync
from django.db import transaction

from orchestrator.engine.store import StepWrite
from orchestrator.events import canonical, legacy_canonical, send_event_on_commit, verify_chain
from orchestrator.models import Run, RunEvent
from orchestrator.store import DjangoRunStore
from orchestrator.trace_files import export_trace, signing_key, verify_trace
from tests.conftest import pipeline, scripted, start

pytestmark = pytest.mark.django_db(transaction=True)

VALUES = [1e16, 1.5e300, -0.0, 123456789012345678.0, {2: "a", 10: "b"}, {1: "x", "b": [{3: -0.0}]},
          [True, None, "1e+16 as text", 1e15, 1e-7, 2.5]]


def _run(team) -> Run:
    scripted(team, "fast", {"text": "ok"})
    run = start(pipeline(team, {"steps": [{"kind": "agent", "id": "s0", "agent": "fast", "prompt": "go"}]}))
    Run.objects.filter(pk=run.pk).update(status="running", lease_owner="me")
    return run


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_a_steps_events_verify_whatever_numbers_and_keys_they_hold(team, value):
    run = _run(team)

    async def step() -> None:
        store = DjangoRunStore(run.pk, lease_owner="me", publish_events=False)
        await store.load()
        store.stage(StepWrite("s0", "s0", "agent", "succeeded", output={"n": value}, started=True, finished=True))
        store.emit("step.succeeded", {"step_id": "s0", "output": {"n": value}}, "s0")
        await store.commit()

    async_to_sync(step)()
    events = list(RunEvent.objects.filter(run=run).order_by("seq"))
    assert verify_chain(events).ok, verify_chain(events)
    assert canonical(events[-1].data) == canonical({"step_id": "s0", "output": {"n": value}})  # read back = hashed


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_an_actions_event_verifies_too(team, value):
    run = _run(team)
    with transaction.atomic():
        send_event_on_commit(Run.objects.get(pk=run.pk), "review.note", {"n": value})
    assert verify_chain(list(RunEvent.objects.filter(run=run).order_by("seq"))).ok


def test_the_stored_form_is_what_jsonb_gives_back():
    assert canonical({"n": 1e16, "z": -0.0}) == '{"n":10000000000000000,"z":0.0}'
    assert canonical({2: "a", 10: "b"}) == '{"10":"b","2":"a"}'  # sorted as text, as read back
    assert canonical({"n": 1.2345678901234568e17}) == '{"n":123456789012345680}'  # the decimal written, not the binary
    plain = {"a": [1, 2.5, 1e-07, "x"], "b": {"c": None, "d": True}}
    assert canonical(plain) == legacy_canonical(plain)  # everything else: the same text as before


def test_a_chain_hashed_before_keeps_verifying(team):
    """SQLite kept the text as given, so a chain hashed over the older text (1e+16) still verifies."""
    run = _run(team)
    with transaction.atomic():
        send_event_on_commit(Run.objects.get(pk=run.pk), "review.note", {"n": 1e16})
    event = RunEvent.objects.filter(run=run).order_by("seq").last()
    from orchestrator.events import event_hash

    old = event_hash(event.prev_hash, event.seq, event.type, event.step_key, legacy_canonical({"n": 1e16}),
                     event.created_at.isoformat(timespec="microseconds"))
    RunEvent.objects.filter(pk=event.pk).update(hash=old)  # (as the older code had hashed it)
    Run.objects.filter(pk=run.pk).update(last_hash=old)
    payload = {"run_id": run.pk, "seq": event.seq, "type": event.type, "step_key": event.step_key,
               "data": {"n": 1e16}, "created_at": event.created_at.isoformat(timespec="microseconds"), "hash": old,
               "prev_hash": event.prev_hash}
    earlier = list(RunEvent.objects.filter(run=run, seq__lt=event.seq).order_by("seq"))
    assert verify_chain([*earlier, payload]).ok
    tampered = {**payload, "data": {"n": 2e16}}
    assert not verify_chain([*earlier, tampered]).ok


def test_a_trace_with_such_numbers_exports_and_verifies_and_one_signed_over_the_older_text_too(team):
    run = _run(team)
    with transaction.atomic():
        send_event_on_commit(Run.objects.get(pk=run.pk), "review.note", {"n": 1e16, "k": {2: "a", 10: "b"}})
    document = export_trace(Run.objects.get(pk=run.pk))

    assert verify_trace(json.loads(json.dumps(document))).ok  # through a file's JSON, as a verifier reads it

    body = {k: v for k, v in json.loads(json.dumps(document)).items() if k != "signature"}
    body["note"] = {"big": 1e16}
    kid, key = signing_key()
    older = {**body, "signature": {"alg": "Ed25519", "kid": kid,
                                   "value": base64.b64encode(key.sign(legacy_canonical(body).encode())).decode()}}
    assert verify_trace(json.loads(json.dumps(older))).ok
    forged = json.loads(json.dumps(older))
    forged["note"] = {"big": 2e16}
    assert not verify_trace(forged).ok

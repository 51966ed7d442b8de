"""Signed trace exports: a run with a failed tool call the agent recovered from exports and
verifies; an edited, removed or reordered event, a cut-off tail and foreign or wrong
signatures are each detected with the broken link named."""

from __future__ import annotations

import base64
import copy
import io
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import call_command
from django.test import Client

from mcpgateway.actions.access import do_create_api_key
from orchestrator.events import canonical
from orchestrator.models import Run, SigningKey
from orchestrator.trace_files import export_trace, verify_trace
from tests.conftest import counting_toolbox, execute, pipeline, scripted, start

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def recovered_run(team) -> Run:
    scripted(team, "calc", {"tool_calls": [{"name": "t__add", "arguments": {"a": 1}}]},
             {"tool_calls": [{"name": "t__add", "arguments": {"a": 1, "b": 2}}]}, {"text": "3"})
    run = execute(start(pipeline(team, {"steps": [{"kind": "agent", "id": "calc", "agent": "calc", "prompt": "1+2"}]})),
                  counting_toolbox({"calc": ["t__add"]}, []))
    assert run.status == "succeeded"
    return Run.objects.select_related("pipeline_version__pipeline").get(pk=run.pk)


def test_an_exported_trace_verifies(recovered_run, tmp_path):
    trace = export_trace(recovered_run)

    report = verify_trace(trace)
    assert report.ok, report.problems
    assert report.counts["events"] == recovered_run.last_seq and report.counts["calls"] == 4  # 2 model turns that asked for tools + 2 tool calls
    assert report.signed_by == SigningKey.objects.get().kid
    finished = [e for e in trace["events"] if e["type"] == "tool.finished"]
    assert [e["data"]["is_error"] for e in finished] == [True, False]  # the failure and the recovery are in it
    assert all(c["request_digest"].startswith("sha256:") for c in trace["calls"])

    path = tmp_path / "run.trace.json"
    out = io.StringIO()
    call_command("trace", "export", str(recovered_run.pk), "-o", str(path), stdout=out)
    out = io.StringIO()
    call_command("trace", "verify", str(path), stdout=out)
    assert out.getvalue().startswith("OK: ")


def _resigned(trace: dict, key: Ed25519PrivateKey, kid: str) -> dict:
    body = {k: v for k, v in trace.items() if k != "signature"}
    return {**body, "signature": {"alg": "Ed25519", "kid": kid, "value": base64.b64encode(key.sign(canonical(body).encode())).decode()}}


def test_tampering_is_detected_and_the_first_broken_link_named(recovered_run, tmp_path):
    trace = export_trace(recovered_run)

    edited = copy.deepcopy(trace)
    edited["events"][4]["data"]["text"] = "something else"
    report = verify_trace(edited)
    assert not report.ok and report.first_broken == "event #5" and "altered" in report.problems[0]
    assert any("signature does not match" in p for p in report.problems)

    removed = copy.deepcopy(trace)
    del removed["events"][3]
    report = verify_trace(removed)
    assert report.first_broken == "event #5" and "missing or reordered" in report.problems[0]

    reordered = copy.deepcopy(trace)
    reordered["events"][2], reordered["events"][3] = reordered["events"][3], reordered["events"][2]
    assert verify_trace(reordered).first_broken == "event #4"

    cut = copy.deepcopy(trace)
    cut["events"].pop()
    cut["counts"]["events"] -= 1
    report = verify_trace(cut)
    assert report.first_broken == "chain_head" and "removed from the end" in report.problems[0]

    foreign_key = Ed25519PrivateKey.generate()
    foreign = _resigned(edited, foreign_key, "adk-attacker")
    report = verify_trace(foreign)
    assert any("foreign signature" in p for p in report.problems)
    same_kid = _resigned(trace, foreign_key, trace["signature"]["kid"])
    report = verify_trace(same_kid)
    assert report.first_broken == "signature" and "does not match" in report.problems[0]
    # Given the attacker's public key explicitly, the signature checks, but the chain still breaks.
    raw = foreign_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    report = verify_trace(foreign, {"adk-attacker": base64.b64encode(raw).decode()})
    assert report.signed_by == "adk-attacker" and report.first_broken == "event #5"

    path = tmp_path / "edited.json"
    path.write_text(json.dumps(edited))
    err = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("trace", "verify", str(path), stderr=err)
    assert exited.value.code == 1 and "BROKEN at event #5" in err.getvalue()


def test_the_api_verifies_and_the_public_key_is_served(recovered_run, owner, team):
    _, token = do_create_api_key(team.pk, "k", user=owner)
    api = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    trace = api.get(f"/api/v1/runs/{recovered_run.pk}/trace").json()

    ok = api.post("/api/v1/traces/verify", trace, content_type="application/json").json()
    trace["events"][1]["data"]["agent"] = "someone-else"
    broken = api.post("/api/v1/traces/verify", trace, content_type="application/json").json()
    keys = Client().get("/.well-known/agentdeck/trace-keys.json").json()["keys"]

    assert ok["ok"] and ok["signed_by"] == keys[0]["kid"]
    assert not broken["ok"] and broken["first_broken"] == "event #2"
    assert Client().post("/api/v1/traces/verify", trace, content_type="application/json").status_code == 401
    assert keys[0]["alg"] == "Ed25519" and len(base64.b64decode(keys[0]["public_key"])) == 32


def test_the_run_page_says_whether_the_trace_verifies(recovered_run, owner):
    browser = Client()
    browser.force_login(owner)
    page = browser.get(f"/runs/{recovered_run.pk}/").content.decode()
    assert "Trace verifies" in page and f"/runs/{recovered_run.pk}/trace.json" in page
    assert browser.get(f"/runs/{recovered_run.pk}/trace.json").json()["format"] == "agentdeck-trace/1"

    event = recovered_run.events.get(seq=3)
    event.data = {**event.data, "tampered": True}
    event.save()
    assert "Trace broken</span> at event #3" in browser.get(f"/runs/{recovered_run.pk}/").content.decode()


@pytest.mark.parametrize("change", [
    {"chain_head": "x"}, {"counts": []}, {"signature": {"alg": "Ed25519", "kid": ["a"], "value": 1}},
    {"events": [{"seq": "one"}]}, {"events": "nope"},
])
def test_malformed_files_are_reported_not_crashed_on(recovered_run, change):
    report = verify_trace({**export_trace(recovered_run), **change})
    assert not report.ok and report.first_broken and report.problems

"""The builder's saves in a real browser (daphne + Debian chromium): a complex spec opened,
touched and saved comes back whole; a YAML edit saved at once (Ctrl+S while typing, or
within the 400 ms before the builder reads it) is what is saved — the spec from before it
was saved, and the page said "Saved version 2" (found by a review); a JSON view that does
not parse saves nothing."""

from __future__ import annotations

import copy
import time

import pytest
from playwright.sync_api import expect

from orchestrator.actions.pipelines import check_spec, normalise
from tests.conftest import pipeline, scripted
from tests.e2e.conftest import sign_in

pytestmark = pytest.mark.django_db(transaction=True)

COMPLEX = {
    "description": "complex",
    "inputs": {"task": {"type": "string", "description": "the task"},
               "rounds": {"type": "integer", "required": False, "default": 2}},
    "limits": {"max_tokens": 5000, "max_cost_usd": 1.5},
    "steps": [
        {"kind": "loop", "id": "fix_loop", "title": "Write and review", "max_iterations": 4, "on_max": "review",
         "until": {"all": [{"ref": "steps.reviewer.output", "op": "not_contains", "value": "needs changes"},
                           {"not": {"ref": "steps.coder.output", "op": "matches", "value": "TODO|FIXME", "case_sensitive": True}}]},
         "body": [
             {"kind": "agent", "id": "coder", "agent": "coder", "prompt": "Task: {{ input.task }}\n{{ steps.reviewer.output }}",
              "output_format": "json", "max_turns": 7, "timeout_s": 30,
              "retry": {"max_attempts": 3, "backoff_s": 1.5, "backoff_factor": 3, "max_backoff_s": 20}},
             {"kind": "agent", "id": "reviewer", "agent": "reviewer", "prompt": "Review {{ steps.coder.output }}",
              "on_failure": "continue"},
         ]},
        {"kind": "parallel", "id": "checks", "on_branch_failure": "review", "max_concurrency": 2,
         "branches": [
             {"kind": "agent", "id": "security", "agent": "coder", "prompt": "{{ steps.coder.output }}"},
             {"kind": "sequence", "id": "docs_seq", "steps": [
                 {"kind": "agent", "id": "docs", "agent": "reviewer", "prompt": "{{ steps.coder.output }}"}]},
         ],
         "join": {"kind": "agent", "id": "summary", "agent": "coder",
                  "prompt": "{{ steps.security.output }} {{ steps.docs.output }}"}},
        {"kind": "branch", "id": "gate", "if": {"ref": "steps.summary.output", "op": "equals", "value": 3},
         "then": [{"kind": "review", "id": "sign_off", "instructions": "Ship it?", "show": "{{ steps.coder.output }}",
                   "timeout_s": 600}],
         "else": [{"kind": "agent", "id": "fallback", "agent": "coder", "prompt": "x"}]},
    ],
    "outputs": {"code": "steps.coder.output", "summary": "steps.summary.output"},
}


def _open_builder(page, base, pipe):
    page.goto(f"{base}/pipelines/{pipe.pk}/")
    expect(page.locator("#validation-status")).to_have_text("Valid — ready to save", timeout=20_000)


def _wait_versions(pipe, n, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pipe.versions.count() >= n:
            return pipe.versions.order_by("-number").first()
        time.sleep(0.2)
    raise AssertionError(f"no version {n} saved")


def _setup(team):
    scripted(team, "coder", {"text": "x"})
    scripted(team, "reviewer", {"text": "x"})
    return pipeline(team, copy.deepcopy(COMPLEX), name="complex")


def test_a_complex_spec_survives_a_touch_and_save(live_app, page, team):
    pipe = _setup(team)
    stored = pipe.latest_version().spec
    page_errors = []
    page.on("pageerror", lambda exc: page_errors.append(str(exc)))
    page.goto(f"{live_app}/accounts/login/")
    sign_in(page, live_app, "owner", "pw-owner-123")
    _open_builder(page, live_app, pipe)
    # visit every node on the canvas (each opens its card in the side panel)
    for node in page.locator("#flow-canvas [data-node-id], #flow-canvas .fc-node").all():
        try:
            node.click(timeout=2000)
        except Exception:
            pass
    details = page.locator("details#outline")
    if details.get_attribute("open") is None:
        details.locator(":scope > summary").click()
    page.fill(".pipeline-description", "complex, touched")
    expect(page.locator("#validation-status")).to_have_text("Valid — ready to save")
    page.click("#save-version")
    saved = _wait_versions(pipe, 2)
    want = normalise(check_spec(team, {**copy.deepcopy(COMPLEX), "description": "complex, touched"}))
    assert not page_errors, page_errors
    assert saved.spec == want, {"stored_v1": stored, "saved_v2": saved.spec}


def test_a_yaml_edit_saved_with_ctrl_s_is_what_is_saved(live_app, page, team):
    pipe = _setup(team)
    sign_in(page, live_app, "owner", "pw-owner-123")
    _open_builder(page, live_app, pipe)
    details = page.locator("details#outline")
    if details.get_attribute("open") is None:
        details.locator(":scope > summary").click()
    page.click(".tab[data-tab=yaml]")
    yaml_text = page.input_value("#spec-yaml")
    assert "title: Write and review" in yaml_text
    page.fill("#spec-yaml", yaml_text.replace("title: Write and review", "title: Write, review, repeat"))
    page.keyboard.press("Control+s")
    saved = _wait_versions(pipe, 2)
    expect(page.locator("#save-status")).to_have_count(1)
    assert saved.spec["steps"][0]["title"] == "Write, review, repeat", (
        f"v{saved.number} was saved with title {saved.spec['steps'][0]['title']!r}: the YAML edit was dropped")


def test_a_json_view_that_does_not_parse_saves_nothing(live_app, page, team):
    pipe = _setup(team)
    sign_in(page, live_app, "owner", "pw-owner-123")
    _open_builder(page, live_app, pipe)
    details = page.locator("details#outline")
    if details.get_attribute("open") is None:
        details.locator(":scope > summary").click()
    page.click(".tab[data-tab=json]")
    text = page.input_value("#spec-json")
    page.fill("#spec-json", text.replace('"Write and review"', '"Write and review",,'))
    expect(page.locator("#json-error")).to_contain_text("does not parse")
    page.keyboard.press("Control+s")
    expect(page.locator("#save-status")).to_contain_text("nothing was saved")
    time.sleep(1)
    assert pipe.versions.count() == 1

"""The run page's diagram in a real browser: node states change live without a reload, a
clicked node shows its tool calls, the timeline shows spans, a fork from the second step with
an edited output reaches the later steps, and "run again" starts the same input again."""

from __future__ import annotations

import re
import sys
import time

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from playwright.sync_api import Page, expect

from mcpgateway.actions.access import do_grant
from mcpgateway.actions.servers import do_save_server
from orchestrator.actions import do_create_pipeline, do_create_team
from orchestrator.models import Pipeline, Run, StepRun, UsageRecord
from tests.conftest import scripted
from tests.e2e.conftest import screenshot, sign_in

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "pw-canvas-12345"
SPEC = {"steps": [
    {"kind": "agent", "id": "plan", "agent": "planner", "prompt": "plan it"},
    {"kind": "agent", "id": "draft", "agent": "drafter", "prompt": "draft after {{ steps.plan.output }}"},
    {"kind": "loop", "id": "rounds", "max_iterations": 2,
     "until": {"ref": "steps.polish.output", "op": "equals", "value": "done"},
     "body": [{"kind": "agent", "id": "polish", "agent": "polisher", "prompt": "polish"}]},
    {"kind": "parallel", "id": "fan", "branches": [
        {"kind": "agent", "id": "left", "agent": "analyst", "prompt": "left view"},
        {"kind": "agent", "id": "right", "agent": "analyst", "prompt": "right view"}],
     "join": {"kind": "agent", "id": "summary", "agent": "closer", "prompt": "summary of {{ steps.draft.output }}"}},
]}


@pytest.fixture
def canvas_pipeline(transactional_db) -> Pipeline:
    """A pipeline with a tool call, a loop and a parallel step; made before daphne starts its tool server."""
    user = get_user_model().objects.create_user("canvas", password=PASSWORD)
    team = do_create_team("Canvas team", user)
    server = do_save_server(team.pk, "echo", transport="stdio", command=sys.executable,
                            args=["-m", "tests.fakes.mcp_echo_server"], cwd=str(settings.BASE_DIR), operator=True)
    do_grant(server, agent="drafter")
    scripted(team, "planner", {"text": "plan ready"})
    scripted(team, "drafter", {"tool_calls": [{"name": "echo__echo", "arguments": {"message": "tool says hi"}}]},
             {"text": "draft from {{last}}"})
    scripted(team, "polisher", {"text": "again", "delay_ms": 500})
    scripted(team, "analyst", {"text": "a view", "delay_ms": 2500})
    scripted(team, "closer", {"text": "final answer: {{prompt}}"})
    pipe = do_create_pipeline(team, "canvas demo", SPEC)
    pipe.echo_server = server
    return pipe


def wait_for(condition, timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def node(page: Page, step_id: str):
    return page.locator(f'#run-canvas g.fc-node[data-node-id="{step_id}"]')


def start_from_form(page: Page, base: str, pipeline: Pipeline) -> int:
    page.goto(f"{base}/runs/new/?pipeline={pipeline.pk}")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/runs/\d+/$"))
    return int(page.url.rstrip("/").rsplit("/", 1)[1])


def current_run(page: Page) -> int:
    return int(page.url.rstrip("/").rsplit("/", 1)[1])


def test_it_watches_the_canvas_live_and_forks_and_runs_again(canvas_pipeline, live_app, page):
    wait_for(lambda: canvas_pipeline.echo_server.tools.exists(), what="the echo server's tools")
    sign_in(page, live_app, "canvas", PASSWORD)
    run_id = start_from_form(page, live_app, canvas_pipeline)
    page.evaluate("window.__samePage = true")

    # live states on the diagram's SVG nodes: the branches light up together, then finish
    expect(node(page, "left")).to_have_class(re.compile(r"\bfc-status-running\b"), timeout=20_000)
    expect(node(page, "right")).to_have_class(re.compile(r"\bfc-status-running\b"))
    expect(node(page, "plan")).to_have_class(re.compile(r"\bfc-status-succeeded\b"))
    expect(node(page, "rounds").locator(".fc-counter-text")).to_have_text("2/2")
    screenshot(page, "run-canvas-running")
    expect(node(page, "summary")).to_have_class(re.compile(r"\bfc-status-succeeded\b"), timeout=20_000)
    expect(node(page, "left")).to_have_class(re.compile(r"\bfc-status-succeeded\b"))
    expect(page.locator("#run-header")).to_have_attribute("data-status", "succeeded")
    assert page.evaluate("window.__samePage") is True, "the page was reloaded"
    assert page.evaluate("window.__runCanvas.events") > 0

    # a node's panel: its tool call in the open, its audit row
    node(page, "draft").click()
    expect(page.locator("#step-panel-body")).to_have_attribute("data-step-key", "draft")
    call = page.locator('#step-panel .panel-tool-call[data-tool="echo__echo"]')
    expect(call).to_be_visible()
    expect(call.locator(".tool-result")).to_contain_text("tool says hi")
    expect(page.locator("#step-panel .audit-row")).to_have_count(1)

    # the timeline: steps, model turns and the tool call
    expect(page.locator('#run-timeline [data-span-kind="tool"]')).to_have_count(1)
    assert page.locator('#run-timeline [data-span-kind="step"]').count() >= 7
    screenshot(page, "run-canvas-finished")

    # fork from the second step with an edited output
    page.check("#fork-edit")
    page.fill("#fork-output", "HAND EDIT")
    page.click("#fork-submit")
    page.wait_for_url(lambda url: re.search(r"/runs/(\d+)/$", url) is not None and not url.endswith(f"/runs/{run_id}/"))
    fork_id = current_run(page)
    expect(page.locator("#fork-note")).to_contain_text(f"run #{run_id}")
    expect(page.locator("#run-header")).to_have_attribute("data-status", "succeeded", timeout=20_000)
    expect(page.locator("#run-outputs")).to_contain_text("final answer: summary of HAND EDIT")
    expect(node(page, "draft")).to_have_class(re.compile(r"\bfc-status-succeeded\b"))
    assert not UsageRecord.objects.filter(run_id=fork_id, step_key__in=["plan", "draft"]).exists()
    assert StepRun.objects.get(run_id=fork_id, key="draft").output == "HAND EDIT"
    screenshot(page, "run-canvas-fork")

    # run again with the same input
    page.click("#run-again")
    page.click("#run-again-confirm-button")
    page.wait_for_url(lambda url: re.search(r"/runs/(\d+)/$", url) is not None and not url.endswith(f"/runs/{fork_id}/"))
    again_id = current_run(page)
    expect(page.locator("#run-header")).to_have_attribute("data-status", "succeeded", timeout=25_000)
    again = Run.objects.get(pk=again_id)
    assert again.input == Run.objects.get(pk=fork_id).input
    assert UsageRecord.objects.filter(run_id=again_id, step_key="plan").exists()

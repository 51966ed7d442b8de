"""Runs in a real browser: start one from the form and watch it live, open one mid-run and
catch up, see the list update, and find model and tool text inert on the page.

Runs are started through the web app, so they execute in the daphne process whose channel
layer feeds the page's websocket.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import Page, Route, expect

from mcpgateway.actions.access import do_grant
from mcpgateway.actions.servers import do_save_server
from mcpgateway.models import ToolServer
from orchestrator.actions import do_create_pipeline
from orchestrator.demo import ANALYSTS, seed_demo
from orchestrator.models import Agent, Pipeline, Run, StepRun, Team
from tests.conftest import scripted
from tests.e2e.conftest import screenshot, sign_in

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "pw-admin-12345"
PWN = "<script>window.__pwned=1</script>"


@pytest.fixture
def demo(transactional_db) -> Team:
    """The demo team and its admin; analysts slowed down so their running state can be watched."""
    team, _, _ = seed_demo(password=PASSWORD)
    for agent in Agent.objects.filter(team=team, name__in=[f"{n}_analyst" for n in ANALYSTS]):
        agent.options["script"]["replies"][0]["delay_ms"] = 2000
        agent.save()
    return team


@pytest.fixture
def echo_server(demo) -> ToolServer:
    """A tool server that returns what it is given, for the agent `leaky`; created before daphne starts it."""
    server = do_save_server(demo.pk, "echo", transport="stdio", command=sys.executable,
                            args=["-m", "tests.fakes.mcp_echo_server"], cwd=str(settings.BASE_DIR), operator=True)
    do_grant(server, agent="leaky")
    return server


def wait_for(condition: Callable[[], bool], timeout: float = 20, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def start_from_form(page: Page, base: str, pipeline: Pipeline, **inputs: str) -> int:
    page.goto(f"{base}/runs/new/?pipeline={pipeline.pk}")
    for name, value in inputs.items():
        page.fill(f"[name=input-{name}]", value)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/runs/\d+/$"))
    return int(page.url.rstrip("/").rsplit("/", 1)[1])


def step_status(page: Page, key: str):
    return page.locator(f"#step-{key.replace('#', '--')} > .step-head .step-status")


def test_it_starts_the_market_analysis_from_the_form_and_watches_it_live(demo, live_app, page):
    market = Pipeline.objects.get(team=demo, slug="market-analysis")
    sign_in(page, live_app, "admin", PASSWORD)

    run_id = start_from_form(page, live_app, market, ticker="ACME")
    page.evaluate("window.__samePage = true")

    for name in ANALYSTS:
        expect(step_status(page, name)).to_have_text("running")
    for name in ANALYSTS:
        expect(step_status(page, name)).to_have_text("succeeded")
    expect(page.locator("#step-summary .step-output")).to_contain_text("Recommendation: HOLD")
    expect(page.locator("#run-header")).to_have_attribute("data-status", "succeeded")
    expect(page.locator("#run-outputs [data-output=summary]")).to_contain_text("Recommendation: HOLD")
    assert page.evaluate("window.__samePage") is True, "the page was reloaded"
    live = page.evaluate("window.__liveRun")
    assert live["gaps"] == 0 and live["deltas"] > 0
    assert live["lastSeq"] == Run.objects.get(pk=run_id).last_seq
    screenshot(page, "live-run")


def test_it_catches_up_on_a_page_opened_mid_run(demo, live_app, page):
    scripted(demo, "quick", {"text": "quick answer"})
    scripted(demo, "slow", {"text": "slow answer", "delay_ms": 1500})
    three = do_create_pipeline(demo, "three steps", {"steps": [
        {"kind": "agent", "id": "first", "agent": "quick", "prompt": "one"},
        {"kind": "agent", "id": "second", "agent": "slow", "prompt": "two"},
        {"kind": "agent", "id": "third", "agent": "quick", "prompt": "three"}]})
    sign_in(page, live_app, "admin", PASSWORD)
    run_id = start_from_form(page, live_app, three)
    page.goto("about:blank")
    wait_for(lambda: StepRun.objects.filter(run_id=run_id, key="second", status="running").exists(),
             what="the slow step to start")

    def run_script_late(route: Route) -> None:
        # The page is rendered mid-run, but its script starts only once the run has finished:
        # everything after the rendered seq must come from the socket's catch-up.
        response = route.fetch()
        wait_for(lambda: Run.objects.get(pk=run_id).status == "succeeded", what="the run to finish")
        route.fulfill(response=response)

    page.route("**/static/js/live_run.js", run_script_late)
    with page.expect_response(f"{live_app}/runs/{run_id}/") as document:
        page.goto(f"{live_app}/runs/{run_id}/")
    rendered = document.value.text()

    assert 'id="step-second" data-step-key="second" data-status="running"' in rendered
    assert 'id="step-third" data-step-key="third" data-status="pending"' in rendered
    expect(step_status(page, "third")).to_have_text("succeeded")
    expect(page.locator("#step-third .step-output")).to_contain_text("quick answer")
    expect(page.locator("#run-header")).to_have_attribute("data-status", "succeeded")
    after = int(re.search(r'data-after="(\d+)"', rendered).group(1))
    run = Run.objects.get(pk=run_id)
    expect(page.locator("#live-run")).to_have_attribute("data-live", "live")
    live = page.evaluate("window.__liveRun")
    assert live["gaps"] == 0 and live["lastSeq"] == run.last_seq
    assert live["applied"] == run.last_seq - after > 0


def add_history(team: Team, pipeline: Pipeline) -> None:
    """Earlier runs in every final state, so the list has something to show around the live one."""
    admin = get_user_model().objects.get(username="admin")
    now = timezone.now()
    for hours, status in enumerate(["succeeded", "failed", "waiting_review", "cancelled"], start=1):
        started = now - timedelta(hours=hours)
        run = Run.objects.create(team=team, pipeline_version=pipeline.latest_version(), status=status, created_by=admin,
                                 started_at=started, input_tokens=900 * hours, output_tokens=200 * hours,
                                 cost_usd=Decimal("0.0123") * hours,
                                 finished_at=None if status == "waiting_review" else started + timedelta(seconds=7 * hours))
        Run.objects.filter(pk=run.pk).update(created_at=started)


def test_it_adds_runs_started_elsewhere_to_the_list_live(demo, live_app, page):
    market = Pipeline.objects.get(team=demo, slug="market-analysis")
    add_history(demo, Pipeline.objects.get(team=demo, slug="code-review"))
    sign_in(page, live_app, "admin", PASSWORD)
    page.goto(f"{live_app}/runs/")
    page.evaluate("window.__samePage = true")
    expect(page.locator(".run-row")).to_have_count(4)
    elsewhere = page.context.new_page()

    run_id = start_from_form(elsewhere, live_app, market, ticker="ACME")

    row = page.locator(f"#run-row-{run_id}")
    expect(row).to_be_visible()
    expect(row).to_have_attribute("data-status", "succeeded", timeout=20_000)
    expect(page.locator(".run-row").first).to_have_attribute("id", f"run-row-{run_id}")
    assert page.evaluate("window.__samePage") is True, "the list was reloaded"
    screenshot(page, "runs-list")


def test_it_shows_model_and_tool_text_as_inert_text(demo, echo_server, live_app, page):
    wait_for(lambda: echo_server.tools.exists(), timeout=30, what="the echo server's tools")
    scripted(demo, "leaky", {"tool_calls": [{"name": "echo__echo", "arguments": {"message": PWN}}]},
             {"text": f"The tool said {{{{last}}}} and so do I: {PWN}"})
    leak = do_create_pipeline(demo, "leak", {"steps": [{"kind": "agent", "id": "leak", "agent": "leaky", "prompt": "go"}]})
    sign_in(page, live_app, "admin", PASSWORD)

    start_from_form(page, live_app, leak)

    expect(step_status(page, "leak")).to_have_text("succeeded")
    expect(page.locator("#step-leak .tool-result")).to_have_text(PWN)
    expect(page.locator("#step-leak .turn-text").last).to_contain_text(f"and so do I: {PWN}")
    assert page.evaluate("window.__pwned") is None
    page.reload()
    expect(page.locator("#step-leak .tool-result")).to_have_text(PWN)
    expect(page.locator("#step-leak .tool-args")).to_contain_text(PWN)
    assert page.evaluate("window.__pwned") is None

"""The usage page in a real browser: after a few runs, Chart.js draws the four charts."""

from __future__ import annotations

import pytest

from orchestrator.actions import do_create_pipeline, do_start_run
from orchestrator.demo import seed_demo
from orchestrator.models import Pipeline
from tests.conftest import execute, scripted
from tests.e2e.conftest import off_this_thread, screenshot, sign_in

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "pw-admin-12345"




def test_it_draws_the_usage_charts_after_a_few_runs(live_app, page):
    def setup() -> list[str]:
        team, _, _ = seed_demo(password=PASSWORD)
        market = Pipeline.objects.get(team=team, slug="market-analysis")
        runs = [execute(do_start_run(market.latest_version(), {"ticker": t}, submit=False)) for t in ("ACME", "INITECH")]
        scripted(team, "broken", {"text": "", "error": "model unavailable", "retryable": False})
        failing = do_create_pipeline(team, "Always fails", {"steps": [
            {"kind": "agent", "id": "s", "agent": "broken", "prompt": "go", "on_failure": "fail"}]})
        runs.append(execute(do_start_run(failing.latest_version(), {}, submit=False)))
        return [r.status for r in runs]

    assert off_this_thread(setup) == ["succeeded", "succeeded", "failed"]

    sign_in(page, live_app, "admin", PASSWORD)
    page.goto(f"{live_app}/usage/")
    page.wait_for_function("typeof Chart !== 'undefined' && Object.keys(Chart.instances).length >= 4")

    assert page.locator("canvas[data-chart]").count() == 4
    assert page.evaluate("Object.keys(Chart.instances).length") == 4
    kinds = page.evaluate("Object.values(Chart.instances).map(c => c.config.type).sort()")
    assert kinds == ["bar", "bar", "bar", "line"]
    agents = page.evaluate("Chart.getChart(document.querySelector('canvas[data-chart=cost]')).data.datasets.map(d => d.label)")
    assert "summarizer" in agents and "technical_analyst" in agents
    error_rate = page.evaluate("Chart.getChart(document.querySelector('canvas[data-chart=errors]')).data.datasets[0].data.at(-1)")
    assert error_rate == pytest.approx(33.3)
    screenshot(page, "usage")

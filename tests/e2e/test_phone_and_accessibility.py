"""Every page, found by following the app's own links from the home page, at phone size
(390 x 844): no page is wider than the viewport, and axe-core (npm, injected into the page)
reports no serious or critical accessibility violation. Desktop gets the same axe pass."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.conf import settings

from orchestrator.actions import do_create_pipeline, do_start_run
from orchestrator.demo import seed_demo
from orchestrator.evals.harness import do_create_eval_run, execute_eval_run
from orchestrator.evals.suite_files import do_import_suite
from orchestrator.models import Pipeline
from tests.conftest import execute, scripted
from tests.e2e.conftest import SCREENSHOTS, off_this_thread, screenshot, sign_in
from tests.orchestrator.evals.test_eval_runs import SUITE, adder

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "pw-admin-12345"
AXE = Path(settings.BASE_DIR) / "node_modules" / "axe-core" / "axe.min.js"
# Not pages: downloads, feeds, health probes, the admin (Django's own), sign-out.
SKIP = re.compile(r"^/(admin|api|static|ws|metrics|healthz|readyz|accounts/logout)|\.(json|yaml|yml|xml|csv)$|/export")
MAX_PAGES = 90


def _seed() -> None:
    team, _, _ = seed_demo(password=PASSWORD)
    market = Pipeline.objects.get(team=team, slug="market-analysis")
    execute(do_start_run(market.latest_version(), {"ticker": "ACME"}, submit=False))
    scripted(team, "broken", {"text": "", "error": "model unavailable", "retryable": False})
    failing = do_create_pipeline(team, "Always fails", {"steps": [
        {"kind": "agent", "id": "s", "agent": "broken", "prompt": "go", "on_failure": "fail"}]})
    execute(do_start_run(failing.latest_version(), {}, submit=False))
    scripted(team, "writer", {"text": "a draft with a very-long-unbroken-token-" + "x" * 120})
    gated = do_create_pipeline(team, "Gated draft", {"steps": [
        {"kind": "agent", "id": "draft", "agent": "writer", "prompt": "draft"},
        {"kind": "review", "id": "gate", "instructions": "ok?", "show": "{{ steps.draft.output }}"}]})
    execute(do_start_run(gated.latest_version(), {}, submit=False))
    adder(team)
    suite = do_import_suite(team, SUITE)
    asyncio.run(execute_eval_run(do_create_eval_run(suite, label="first").pk))


def _pattern(url: str) -> str:
    parts = urlsplit(url)
    return re.sub(r"\d+", "N", parts.path) + ("?" + "&".join(sorted(k.split("=")[0] for k in parts.query.split("&")))
                                              if parts.query else "")


def _crawl(page, base: str) -> list[str]:
    """Same-origin GET pages reachable by links, one per URL shape (runs/1/ and runs/2/ are one)."""
    queue, seen, pages = ["/"], set(), []
    while queue and len(pages) < MAX_PAGES:
        path = queue.pop(0)
        shape = _pattern(path)
        if shape in seen or SKIP.search(urlsplit(path).path):
            continue
        seen.add(shape)
        response = page.goto(base + path, wait_until="domcontentloaded")
        if response is None or response.status != 200 or "text/html" not in response.headers.get("content-type", ""):
            continue
        pages.append(path)
        hrefs = page.eval_on_selector_all("a[href]", "els => els.map(a => a.getAttribute('href'))")
        for href in hrefs:
            if href and href.startswith("/") and not href.startswith("//"):
                queue.append(href.split("#")[0])
    return pages


def _violations(page) -> list[str]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("""async () => {
        const r = await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}});
        return r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
          .map(v => v.id + ' (' + v.impact + '): ' + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(' | '));
    }""")
    return result


@pytest.fixture
def phone(browser):
    context = browser.new_context(viewport={"width": 390, "height": 844}, bypass_csp=True,
                                  is_mobile=True, has_touch=True, device_scale_factor=2)
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


@pytest.fixture
def desktop(browser):
    context = browser.new_context(viewport={"width": 1440, "height": 900}, bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


def test_it_fits_every_page_on_a_phone_without_serious_accessibility_violations(live_app, phone):
    assert AXE.exists(), "axe-core is installed by `make npm-peers`"
    off_this_thread(_seed)
    sign_in(phone, live_app, "admin", PASSWORD)

    pages = _crawl(phone, live_app)

    assert len(pages) >= 20, pages  # the crawl reached the app, not only the home page
    too_wide, problems = [], {}
    for path in pages:
        phone.goto(live_app + path, wait_until="domcontentloaded")
        width = phone.evaluate("Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)")
        if width > 390:
            too_wide.append(f"{path}: {width}px")
            screenshot(phone, "phone-too-wide-" + re.sub(r"\W+", "-", path).strip("-"))
        found = _violations(phone)
        if found:
            problems[path] = found
    screenshot(phone, "phone-home")
    report = {"wider than 390px": too_wide, "axe": problems}
    (SCREENSHOTS / "phone-report.json").write_text(json.dumps(report, indent=1))
    assert not too_wide and not problems, report


def test_it_collapses_the_menu_behind_a_button_on_a_phone(live_app, phone):
    off_this_thread(lambda: seed_demo(password=PASSWORD))
    sign_in(phone, live_app, "admin", PASSWORD)
    phone.goto(live_app + "/runs/")

    assert not phone.locator("nav.links").is_visible()
    phone.click("button.nav-toggle")
    assert phone.locator("nav.links").is_visible()
    assert phone.get_attribute("button.nav-toggle", "aria-expanded") == "true"
    screenshot(phone, "phone-menu-open")
    phone.click("nav.links >> text=Pipelines")
    phone.wait_for_url("**/pipelines/")


def test_it_has_no_serious_accessibility_violations_on_desktop(live_app, desktop):
    off_this_thread(_seed)
    sign_in(desktop, live_app, "admin", PASSWORD)

    problems = {}
    for path in _crawl(desktop, live_app):
        desktop.goto(live_app + path, wait_until="domcontentloaded")
        found = _violations(desktop)
        if found:
            problems[path] = found
    (SCREENSHOTS / "desktop-report.json").write_text(json.dumps(problems, indent=1))
    assert not problems, problems

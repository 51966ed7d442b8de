"""The builder's canvas in a real browser: a pipeline built only by dragging steps from the
palette onto the diagram and filling the side panel (a coder/reviewer loop, a parallel step
with two branches and a join, a review gate), steps dragged into and out of the loop, undo
and redo of every edit, a rename whose references follow, a reference to a later step
marked on its node, saving and starting a run. Plus the version note typed when creating a
pipeline, the confirmation before deleting a step, and the phone width."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from django.conf import settings
from playwright.sync_api import Locator, Page, expect

from orchestrator.demo import seed_demo
from orchestrator.models import Pipeline
from tests.e2e.conftest import screenshot, sign_in

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "pw-admin-12345"
AXE = Path(settings.BASE_DIR) / "node_modules" / "axe-core" / "axe.min.js"
CODER_PROMPT = "Write a Python function for: {{ input.task }}\n\nReview so far: {{ steps.reviewer.output }}"
REVIEWER_PROMPT = "Review this code; say 'needs changes' if it is wrong:\n\n{{ steps.coder.output }}"


def zone(page: Page, list_path: str, index: int = 0) -> Locator:
    return page.locator(f'.fc-zone[data-list="{list_path}"][data-index="{index}"]')


def node(page: Page, step_id: str) -> Locator:
    return page.locator(f'.fc-node[data-step-id="{step_id}"]')


def reveal(page: Page, target: Locator) -> None:
    """Zoom the diagram to fit (the Fit button) when the target is outside the canvas box."""
    box = page.locator(".fc-box").bounding_box()
    spot = target.bounding_box()
    assert box and spot
    inside = box["y"] <= spot["y"] and spot["y"] + spot["height"] <= box["y"] + box["height"] \
        and box["x"] <= spot["x"] and spot["x"] + spot["width"] <= box["x"] + box["width"]
    if not inside:
        page.click(".fc-controls .fc-fit")


def drag_from_palette(page: Page, kind: str, target: Locator) -> None:
    reveal(page, target)
    page.locator(f'.palette-item[data-kind="{kind}"]').drag_to(target)


def drag_node(page: Page, step_id: str, target: Locator) -> None:
    """A real mouse drag: press on the node, move in steps, release on the drop zone."""
    page.locator(".fc-box").scroll_into_view_if_needed()
    reveal(page, target)
    reveal(page, node(page, step_id))
    source = node(page, step_id).bounding_box()
    goal = target.bounding_box()
    assert source and goal
    page.mouse.move(source["x"] + source["width"] / 2, source["y"] + source["height"] / 2)
    page.mouse.down()
    page.mouse.move(source["x"] + source["width"] / 2 + 12, source["y"] + source["height"] / 2 + 12, steps=3)
    page.mouse.move(goal["x"] + goal["width"] / 2, goal["y"] + goal["height"] / 2, steps=8)
    page.mouse.up()


def panel(page: Page, selector: str) -> Locator:
    return page.locator(f"#inspector-body > .inspector-card {selector}").first


def fill_agent(page: Page, step_id: str, agent: str, prompt: str) -> None:
    panel(page, ".field-id input").fill(step_id)
    panel(page, ".field-id input").press("Tab")
    panel(page, ".field-agent select").select_option(agent)
    panel(page, ".field-prompt textarea").fill(prompt)


def spec_json(page: Page) -> dict:
    return json.loads(page.input_value("#spec-json"))


def blur(page: Page) -> None:
    """Focus the diagram itself, so shortcuts are not typing in a field."""
    page.locator("#canvas-heading").click()


def test_it_builds_a_pipeline_by_drag_and_drop_and_runs_it(live_app, page):
    team, username, _ = seed_demo(password=PASSWORD)
    page_errors: list[str] = []
    page.on("pageerror", lambda exc: page_errors.append(str(exc)))
    sign_in(page, live_app, username, PASSWORD)
    page.goto(f"{live_app}/pipelines/new/")
    page.fill("#pipeline-name", "Canvas desk")
    page.fill("#version-note", "drawn on the canvas")
    page.click("button.add-input")
    page.locator("#input-rows > .kv-row").last.locator(".input-name").fill("task")

    # A loop: coder -> reviewer until the review stops saying "needs changes".
    drag_from_palette(page, "loop", zone(page, "steps", 0))
    expect(node(page, "loop_1")).to_have_class(re.compile("fc-selected"))
    panel(page, ".field-id input").fill("fix_loop")
    panel(page, ".field-id input").press("Tab")
    panel(page, ".cond-ref").fill("steps.reviewer.output")
    panel(page, ".cond-op").select_option("not_contains")
    panel(page, ".cond-value").fill("needs changes")
    drag_from_palette(page, "agent", zone(page, "steps.0.body", 0))
    fill_agent(page, "coder", "coder", CODER_PROMPT)
    drag_from_palette(page, "agent", zone(page, "steps.0.body", 1))
    fill_agent(page, "reviewer", "reviewer", REVIEWER_PROMPT)
    expect(page.locator(".fc-back-edge")).to_have_count(1)
    expect(page.locator(".fc-loop-label")).to_contain_text("not contains")

    # A parallel step with two branches and a join, after the loop.
    drag_from_palette(page, "parallel", zone(page, "steps", 1))
    panel(page, ".field-id input").fill("checks")
    panel(page, ".field-id input").press("Tab")
    drag_from_palette(page, "agent", zone(page, "steps.1.branches", 0))
    fill_agent(page, "security", "security", "Check this code for security problems:\n{{ steps.coder.output }}")
    drag_from_palette(page, "agent", zone(page, "steps.1.branches", 1))
    fill_agent(page, "docs", "docs", "Document this code:\n{{ steps.coder.output }}")
    drag_from_palette(page, "agent", zone(page, "steps.1.join", 0))
    fill_agent(page, "summary", "summarizer", "Sum up:\n{{ steps.security.output }}\n{{ steps.docs.output }}")

    # A review gate at the end.
    drag_from_palette(page, "review", zone(page, "steps", 2))
    panel(page, ".field-id input").fill("approve")
    panel(page, ".field-id input").press("Tab")
    panel(page, ".field-instructions textarea").fill("Approve the change?")
    panel(page, ".field-show textarea").fill("{{ steps.summary.output }}")
    expect(page.locator("#validation-status")).to_have_text("Valid — ready to save")
    expect(page.locator(".fc-node.fc-kind-review")).to_have_count(1)
    built = spec_json(page)
    assert [s["id"] for s in built["steps"]] == ["fix_loop", "checks", "approve"]
    assert [s["id"] for s in built["steps"][0]["body"]] == ["coder", "reviewer"]
    assert [b["id"] for b in built["steps"][1]["branches"]] == ["security", "docs"]
    assert built["steps"][1]["join"]["id"] == "summary"
    assert built["steps"][0]["until"] == {"ref": "steps.reviewer.output", "op": "not_contains", "value": "needs changes"}
    screenshot(page, "canvas-builder")

    # Into the loop and out again, by dragging the node; undo and redo each move.
    drag_node(page, "approve", zone(page, "steps.0.body", 2))
    expect(page.locator("#spec-json")).to_have_value(re.compile(r'"body": \[[^\]]*"id": "approve"', re.S))
    assert [s["id"] for s in spec_json(page)["steps"][0]["body"]] == ["coder", "reviewer", "approve"]
    drag_node(page, "approve", zone(page, "steps", 2))
    assert [s["id"] for s in spec_json(page)["steps"]] == ["fix_loop", "checks", "approve"]
    blur(page)
    page.keyboard.press("Control+z")
    expect(page.locator("#spec-json")).to_have_value(re.compile('"id": "approve"'))
    assert [s["id"] for s in spec_json(page)["steps"][0]["body"]] == ["coder", "reviewer", "approve"]
    page.keyboard.press("Control+Shift+z")
    assert [s["id"] for s in spec_json(page)["steps"]] == ["fix_loop", "checks", "approve"]

    # A field edit is undone and redone too.
    node(page, "docs").click()
    panel(page, ".field-prompt textarea").fill("Document it briefly:\n{{ steps.coder.output }}")
    blur(page)
    page.keyboard.press("Control+z")
    expect(panel(page, ".field-prompt textarea")).to_have_value("Document this code:\n{{ steps.coder.output }}")
    page.keyboard.press("Control+y")
    expect(panel(page, ".field-prompt textarea")).to_have_value("Document it briefly:\n{{ steps.coder.output }}")

    # Every edit since the empty page, undone one by one, then redone one by one.
    final = page.input_value("#spec-json")
    undos = 0
    while page.locator("#undo").is_enabled():
        page.click("#undo")
        undos += 1
    assert undos >= 15
    assert spec_json(page)["steps"] == []
    expect(page.locator(".fc-node")).to_have_count(0)
    for _ in range(undos):
        page.click("#redo")
    expect(page.locator("#redo")).to_be_disabled()
    assert page.input_value("#spec-json") == final
    expect(node(page, "summary")).to_have_count(1)

    # Renaming a step rewrites the references to it.
    node(page, "coder").click()
    panel(page, ".field-id input").fill("author")
    panel(page, ".field-id input").press("Tab")
    expect(page.locator("#canvas-status")).to_contain_text("coder → author")
    renamed = page.input_value("#spec-json")
    assert "steps.coder." not in renamed
    assert renamed.count("steps.author.output") == 3  # reviewer, security, docs
    expect(node(page, "author")).to_have_count(1)

    # A reference to a later step is refused, and its node is marked.
    node(page, "security").click()
    panel(page, ".field-prompt textarea").fill("Check {{ steps.approve.output }}")
    expect(node(page, "security")).to_have_class(re.compile("fc-error"))
    expect(page.locator("#inspector-body .card-errors")).to_contain_text("runs after this one")
    expect(page.locator("#validation-status")).to_contain_text("problem")
    panel(page, ".field-prompt textarea").fill("Check this code for security problems:\n{{ steps.author.output }}")
    expect(node(page, "security")).not_to_have_class(re.compile("fc-error"))
    expect(page.locator("#validation-status")).to_have_text("Valid — ready to save")

    page.click("#save-version")
    page.wait_for_url(re.compile(r"/pipelines/\d+/$"))
    pipeline = Pipeline.objects.get(team=team, name="Canvas desk")
    saved = pipeline.latest_version()
    assert saved.note == "drawn on the canvas"
    assert [s["id"] for s in saved.spec["steps"]] == ["fix_loop", "checks", "approve"]
    assert saved.spec["steps"][0]["body"][0]["id"] == "author"
    expect(page.locator(".fc-node")).to_have_count(8)

    # Start a run; its page opens (the run page's own test watches the statuses).
    page.click("#run-link")
    form = page.locator("main form").filter(has=page.locator("[name*=task]")).first
    form.locator("[name*=task]").first.fill("add two numbers")
    form.locator("button[type=submit], button:not([type]), input[type=submit]").first.click()
    page.wait_for_url(re.compile(r"/runs/\d+/$"))
    expect(page.locator("main")).to_contain_text("Canvas desk")
    assert page_errors == []


def _builder_with_code_pipeline(live_app, page) -> tuple[Pipeline, str]:
    team, username, _ = seed_demo(password=PASSWORD)
    pipeline = Pipeline.objects.get(team=team, slug="code-review")
    sign_in(page, live_app, username, PASSWORD)
    page.goto(f"{live_app}/pipelines/{pipeline.pk}/")
    return pipeline, username


def test_it_keeps_the_version_note_typed_when_creating_a_pipeline(live_app, page):
    team, username, _ = seed_demo(password=PASSWORD)
    sign_in(page, live_app, username, PASSWORD)
    page.goto(f"{live_app}/pipelines/new/")
    page.fill("#pipeline-name", "Noted")
    page.fill("#spec-json", json.dumps({"steps": [{"kind": "agent", "id": "only", "agent": "docs", "prompt": "Hi"}]}))
    expect(page.locator("#validation-status")).to_have_text("Valid — ready to save")
    page.fill("#version-note", "first draft from the canvas")
    page.click("#save-version")
    page.wait_for_url(re.compile(r"/pipelines/\d+/$"))
    version = Pipeline.objects.get(team=team, name="Noted").latest_version()
    assert (version.number, version.note) == (1, "first draft from the canvas")


def test_it_asks_before_deleting_a_step(live_app, page):
    pipeline, _ = _builder_with_code_pipeline(live_app, page)
    first = pipeline.latest_version().spec["steps"][1]["id"]
    dialogs: list[str] = []

    def answer(dialog, accept: bool) -> None:
        dialogs.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    # Delete key on the selected node: asks; "Cancel" keeps the step.
    page.once("dialog", lambda d: answer(d, False))
    node(page, first).click()
    page.keyboard.press("Delete")
    expect(node(page, first)).to_have_count(1)
    assert len(dialogs) == 1 and first in dialogs[0]

    # The side panel's delete button asks too; "OK" deletes.
    page.once("dialog", lambda d: answer(d, True))
    panel(page, ".card-head .delete").click()
    expect(node(page, first)).to_have_count(0)
    assert len(dialogs) == 2
    assert first not in [s["id"] for s in spec_json(page)["steps"]]

    # And so does the outline's.
    page.locator("details#outline > summary").click()
    page.once("dialog", lambda d: answer(d, False))
    page.locator('.step-card[data-path="steps.0"] > .card-head .delete').click()
    assert len(dialogs) == 3
    expect(page.locator('.step-card[data-path="steps.0"]')).to_have_count(1)


def test_it_copies_pastes_and_moves_steps_with_the_keyboard(live_app, page):
    pipeline, _ = _builder_with_code_pipeline(live_app, page)
    ids = [s["id"] for s in pipeline.latest_version().spec["steps"]]
    node(page, ids[-1]).click()
    page.keyboard.press("Control+c")
    page.keyboard.press("Control+v")
    after = [s["id"] for s in spec_json(page)["steps"]]
    assert len(after) == len(ids) + 1 and after[:len(ids)] == ids
    pasted = after[-1]
    assert pasted != ids[-1]
    expect(node(page, pasted)).to_be_focused()
    page.keyboard.press("Alt+ArrowUp")
    assert [s["id"] for s in spec_json(page)["steps"]][-2] == pasted
    page.keyboard.press("Control+z")
    page.keyboard.press("Control+z")
    assert [s["id"] for s in spec_json(page)["steps"]] == ids

    # Cut and paste moves a step across nesting levels, ids kept: into the loop's body...
    loop_id, body = ids[0], [s["id"] for s in pipeline.latest_version().spec["steps"][0]["body"]]
    node(page, ids[-1]).click()
    page.keyboard.press("Control+x")
    expect(node(page, ids[-1])).to_have_count(0)
    node(page, loop_id).click()
    page.keyboard.press("Control+Shift+v")
    assert [s["id"] for s in spec_json(page)["steps"][0]["body"]] == [ids[-1], *body]
    # ... and out of it again, after the loop.
    page.keyboard.press("Control+x")
    node(page, loop_id).click()
    page.keyboard.press("Control+v")
    assert [s["id"] for s in spec_json(page)["steps"]] == [loop_id, ids[-1], *ids[1:-1]]
    assert [s["id"] for s in spec_json(page)["steps"][0]["body"]] == body


def test_it_fits_a_phone_without_scrolling_sideways_and_passes_axe(live_app, browser):
    team, username, _ = seed_demo(password=PASSWORD)
    pipeline = Pipeline.objects.get(team=team, slug="market-analysis")
    context = browser.new_context(viewport={"width": 390, "height": 844}, bypass_csp=True)
    page = context.new_page()
    try:
        sign_in(page, live_app, username, PASSWORD)
        page.goto(f"{live_app}/pipelines/{pipeline.pk}/")
        expect(page.locator(".fc-node").first).to_be_visible()
        node(page, "technical").click()
        expect(panel(page, ".field-id input")).to_have_value("technical")
        screenshot(page, "canvas-builder-phone")
        widths = page.evaluate("""() => ({doc: document.documentElement.scrollWidth,
            builder: document.querySelector('#builder').scrollWidth, view: window.innerWidth})""")
        assert widths["builder"] <= widths["view"], widths
        assert widths["doc"] <= widths["view"], widths
        if AXE.exists():  # axe-core from npm (`make npm-peers`), as the accessibility test uses it
            page.add_script_tag(path=str(AXE))
            serious = page.evaluate("""async () => {
                const r = await axe.run(document.querySelector('#builder'),
                    {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}});
                return r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
                  .map(v => v.id + ': ' + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(' | '));
            }""")
            assert serious == [], serious
    finally:
        context.close()


def test_it_drags_steps_into_branch_arms_and_out_again(live_app, page):
    _, username, _ = seed_demo(password=PASSWORD)
    sign_in(page, live_app, username, PASSWORD)
    page.goto(f"{live_app}/pipelines/new/")
    drag_from_palette(page, "branch", zone(page, "steps", 0))
    expect(page.locator(".fc-node.fc-kind-branch")).to_have_count(1)
    drag_from_palette(page, "agent", zone(page, "steps.0.else", 0))
    assert [s["id"] for s in spec_json(page)["steps"][0]["else"]] == ["agent_1"]
    drag_node(page, "agent_1", zone(page, "steps.0.then", 0))
    moved = spec_json(page)["steps"][0]
    assert ([s["id"] for s in moved["then"]], moved["else"]) == (["agent_1"], [])
    drag_node(page, "agent_1", zone(page, "steps", 1))
    assert [s["id"] for s in spec_json(page)["steps"]] == ["branch_1", "agent_1"]
    assert spec_json(page)["steps"][0]["then"] == []
    # A branch cannot be dropped into itself: its own zones are switched off while it is dragged.
    drag_node(page, "branch_1", zone(page, "steps.0.then", 0))
    assert [s["id"] for s in spec_json(page)["steps"]] == ["branch_1", "agent_1"]
    blur(page)
    page.keyboard.press("Control+z")
    assert [s["id"] for s in spec_json(page)["steps"][0]["then"]] == ["agent_1"]

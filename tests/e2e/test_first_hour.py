"""The first hour of a new team member, in a real browser, without the admin: the home page's
templates, trying an agent in its panel, adding a tool server and trying one of its tools."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model

from mcpgateway.models import AuditEntry, ToolServer
from orchestrator.actions import do_create_team
from orchestrator.actions.try_runs import TRY_SLUG_PREFIX
from orchestrator.models import Agent, Pipeline, Run
from tests.conftest import serving
from tests.e2e.conftest import off_this_thread, screenshot, sign_in

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def http_echo():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = ("import uvicorn\nfrom tests.fakes.mcp_echo_server import build_server\n"
            f"uvicorn.run(build_server().streamable_http_app(json_response=True), host='127.0.0.1', port={port}, "
            "log_level='warning')")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=settings.BASE_DIR)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "the HTTP echo server did not start"
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}/mcp"
    proc.kill()
    proc.wait(timeout=10)


@pytest.fixture
def app(transactional_db):
    with serving({"AGENTDECK_OUTBOUND_ALLOW": "127.0.0.0/8"}) as base:  # the echo server is on loopback
        yield base


def test_the_first_hour(http_echo, app, page):
    off_this_thread(lambda: do_create_team("Newco", get_user_model().objects.create_user("nina", password="pw-nina-12345")))

    # 1. Signed in, the home page says what to do: start from a template.
    sign_in(page, app, "nina", "pw-nina-12345")
    assert page.url.rstrip("/") == app
    assert page.locator("#templates .template-card").count() >= 6
    screenshot(page, "first-hour-home")
    page.locator("#template-research-brief button[type=submit]").click()
    page.wait_for_url(lambda url: "/pipelines/" in url)
    pipeline = off_this_thread(lambda: Pipeline.objects.get(name="Research brief"))
    assert f"/pipelines/{pipeline.pk}/" in page.url
    screenshot(page, "first-hour-pipeline-from-template")

    # 2. Try one of the template's agents in its panel: the scripted reply streams in.
    page.goto(f"{app}/agents/")
    page.get_by_role("link", name="research_editor").first.click()
    page.fill("#try-message", "What should we do?")
    page.click("#try-send")
    reply = page.locator("#try-transcript .turn.agent")
    reply.filter(has_text="Brief: the answer depends on team size").wait_for(timeout=30_000)
    page.locator("#try-status a").wait_for()
    screenshot(page, "first-hour-try-agent")
    run = off_this_thread(lambda: Run.objects.get(pipeline_version__pipeline__slug=f"{TRY_SLUG_PREFIX}research_editor"))
    assert run.status == "succeeded" and run.created_by.username == "nina"

    # 3. Add a remote tool server, see its tools, grant it to the team and try a tool.
    page.goto(f"{app}/tools/")
    page.click("#add-server")
    page.fill("#id_name", "echo")
    page.select_option("#id_transport", "http")
    page.fill("#id_url", http_echo)
    page.click("form.server-form button[type=submit]")
    page.wait_for_url(lambda url: "/tools/servers/" in url and "/new/" not in url, timeout=45_000)
    page.click("#test-server")  # connecting is a POST (builders and up), the GET shows stored health
    page.wait_for_load_state()
    assert page.locator("#probe-health").inner_text() == "Up"
    screenshot(page, "first-hour-server-added")
    server = off_this_thread(lambda: ToolServer.objects.get(name="echo"))

    page.goto(f"{app}/tools/access/")
    page.select_option(".grant-form select[name=principal]", "team")
    page.select_option(".grant-form select[name=target]", f"server:{server.pk}")
    page.click(".grant-form button[type=submit]")
    page.wait_for_load_state()

    page.goto(f"{app}/tools/servers/{server.pk}/")
    page.locator("tr", has_text="echo__echo").get_by_role("link", name="Try").click()
    page.fill("#arg-message", "<i>hello from the browser</i>")
    page.click("form.agent-form button[type=submit]")
    output = page.locator("#try-output")
    output.wait_for()
    assert output.inner_text() == "<i>hello from the browser</i>"  # shown as text, not markup
    assert page.locator("#try-result i").count() == 0
    screenshot(page, "first-hour-try-tool")
    row = off_this_thread(lambda: AuditEntry.objects.get(tool_name="echo__echo"))
    assert row.status == "ok" and row.user_id is not None and row.arguments == {"message": "<i>hello from the browser</i>"}


def test_the_agent_form_shows_the_other_model_field_only_when_asked(live_app, page):
    off_this_thread(lambda: do_create_team("Newco", get_user_model().objects.create_user("nina", password="pw-nina-12345")))
    sign_in(page, live_app, "nina", "pw-nina-12345")

    page.goto(f"{live_app}/agents/new/")
    assert page.locator(".field-model").is_hidden() and page.locator(".field-script").is_visible()
    page.select_option("#id_model_choice", "openai:gpt-4o-mini")
    assert page.locator("#id_provider").input_value() == "openai"
    assert page.locator(".field-script").is_hidden() and page.locator(".field-max_tokens_field").is_visible()
    page.select_option("#id_model_choice", "__other__")
    page.fill("#id_model", "llama3.1:8b")
    page.fill("#id_name", "local")
    page.click("form.agent-form button[type=submit]")
    page.wait_for_url(lambda url: url.rstrip("/").split("/")[-1].isdigit())
    assert off_this_thread(lambda: Agent.objects.get(name="local").model) == "llama3.1:8b"
    screenshot(page, "first-hour-agent-created")

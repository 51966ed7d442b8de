"""Every response carries a Content-Security-Policy that allows no inline script, and no
template relies on inline script or inline event handlers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

pytestmark = pytest.mark.django_db

TEMPLATES = Path(settings.BASE_DIR) / "templates"


def policy(response) -> dict[str, str]:
    header = response["Content-Security-Policy"]
    return {part.split(" ", 1)[0]: part.split(" ", 1)[1] if " " in part else ""
            for part in (p.strip() for p in header.split(";")) if part}


@pytest.fixture
def member(owner, team) -> Client:
    client = Client()
    client.force_login(owner)
    return client


def assert_strict(response) -> None:
    rules = policy(response)
    assert rules["default-src"] == "'self'"
    assert rules["script-src"] == "'self'"
    assert rules["object-src"] == "'none'"
    assert rules["frame-ancestors"] == "'none'"
    assert rules["base-uri"] == "'self'"
    assert "'unsafe-eval'" not in response["Content-Security-Policy"]


@pytest.mark.parametrize("url", ["/runs/", "/pipelines/", "/pipelines/new/", "/review/", "/tools/", "/usage/",
                                 "/agents/", "/evals/", "/observability/"])
def test_it_sends_a_strict_policy_on_dashboard_pages(member, url):
    response = member.get(url)
    assert response.status_code == 200
    assert_strict(response)


def test_it_sends_it_on_htmx_fragments(member):
    response = member.get("/review/list/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert_strict(response)


def test_it_sends_it_on_the_login_page_and_errors(client):
    assert_strict(client.get("/accounts/login/"))
    assert_strict(client.get("/no-such-page/"))
    assert_strict(client.get("/admin/login/"))


def test_it_sends_it_on_api_responses(client):
    assert_strict(client.get("/api/v1/runs"))


def test_it_allows_same_host_websockets(member):
    rules = policy(member.get("/runs/"))
    assert rules["connect-src"] == "'self' ws://testserver wss://testserver"


def test_it_relaxes_only_the_api_docs_page_for_swagger_from_its_cdn(member):
    response = member.get("/api/v1/docs")
    rules = policy(response)
    assert "https://cdn.jsdelivr.net" in rules["script-src"]
    assert rules["frame-ancestors"] == "'none'" and rules["object-src"] == "'none'"


def test_no_template_has_inline_script_or_event_handlers():
    offenders = []
    for path in TEMPLATES.rglob("*.html"):
        text = path.read_text(encoding="utf-8")
        for tag in re.findall(r"<script\b[^>]*>", text):
            if "src=" not in tag and 'type="application/json"' not in tag:
                offenders.append(f"{path}: {tag}")
        offenders += [f"{path}: {m}" for m in re.findall(r"<[^>]*\son[a-z]+\s*=", text)]
        offenders += [f"{path}: hx-on" for _ in re.findall(r"\shx-on", text)]
        offenders += [f"{path}: javascript:" for _ in re.findall(r"javascript:", text)]
    assert offenders == []

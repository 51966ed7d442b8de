"""Signing in, switching teams, and signing out in a real browser."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from orchestrator.actions import do_add_member, do_create_team
from tests.e2e.conftest import screenshot, sign_in

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_signs_in_and_switches_teams(live_app, page):
    user = get_user_model().objects.create_user("ada", password="pw-ada-12345")
    do_create_team("Alpha", user)
    beta = do_create_team("Beta", get_user_model().objects.create_user("bob"))
    do_add_member(beta, user, "viewer")

    sign_in(page, live_app, "ada", "pw-ada-12345")

    assert page.locator(".nav .user").inner_text() == "ada"
    assert page.locator(".team-switch select option:checked").inner_text() == "Alpha"
    page.select_option(".team-switch select", label="Beta")
    page.wait_for_load_state()
    assert page.locator(".team-switch select option:checked").inner_text() == "Beta"
    assert page.locator(".nav .role").inner_text() == "viewer"
    screenshot(page, "signed-in")


def test_it_refuses_a_wrong_password(live_app, page):
    get_user_model().objects.create_user("ada", password="pw-ada-12345")
    page.goto(f"{live_app}/accounts/login/")
    page.fill("input[name=username]", "ada")
    page.fill("input[name=password]", "wrong")
    page.click("button[type=submit]")
    assert "/accounts/login/" in page.url
    assert page.locator(".errorlist").count() == 1

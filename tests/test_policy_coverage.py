"""Every door has a policy entry: each URL pattern (dashboard, admin, and django-ninja's),
each OpenAPI operation, each websocket route, and /mcp. A route added without one fails here,
and is refused at run time (the dashboard and the API look their action up in the table)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.http import HttpResponse
from django.test import Client
from django.urls import get_resolver, include, path
from ninja import NinjaAPI, Router

from authz.policy import POLICY
from authz.routes import (
    URL_ROUTES,
    ninja_operations,
    uncovered_operations,
    uncovered_urls,
    uncovered_websockets,
    unknown_actions,
    walk_urls,
)
from config.api import api
from dashboard.access import team_view
from dashboard.routing import websocket_urlpatterns
from orchestrator.actions import do_create_team


def test_it_has_an_entry_for_every_url_pattern():
    assert uncovered_urls(get_resolver().url_patterns) == []


def test_it_has_an_entry_for_every_openapi_operation():
    assert uncovered_operations(api.get_openapi_schema()) == []


def test_it_has_an_entry_for_every_websocket_route():
    assert uncovered_websockets(websocket_urlpatterns) == []


def test_it_names_only_actions_the_policy_defines():
    assert unknown_actions() == []


def test_it_guards_every_team_page_with_the_tables_action():
    """A dashboard page whose entry is a team action must be a `team_view` naming that action."""
    wrong = []
    for namespace, route, name, callback in walk_urls(get_resolver().url_patterns):
        action = URL_ROUTES.get(name or "") if not namespace else None
        if action is None or POLICY[action].role is None:
            continue
        declared = getattr(callback, "policy_action", None)
        if declared != action:
            wrong.append(f"{route} ({name}): the view declares {declared!r}, the table says {action!r}")
    assert wrong == []


def test_it_reaches_operations_through_the_url_patterns_too():
    """The URL walk sees django-ninja's operations, so both walks agree on the API."""
    seen = {op for *_, callback in walk_urls(get_resolver().url_patterns) for op in ninja_operations(callback)}
    assert len(seen) == len({(p, m) for p, ops in api.get_openapi_schema()["paths"].items() for m in ops})


def _unlisted_page(request):
    return HttpResponse("hello")


def test_it_reports_a_url_pattern_without_an_entry():
    patterns = [*get_resolver().url_patterns, path("extra/", include([path("page/", _unlisted_page, name="unlisted-page")]))]
    assert uncovered_urls(patterns) == ["extra/page/ (name unlisted-page)"]


def test_it_reports_an_unnamed_url_pattern():
    assert uncovered_urls([path("anonymous/", _unlisted_page)]) == ["anonymous/ (name -)"]


def test_it_reports_an_api_operation_without_an_entry():
    extra = NinjaAPI(urls_namespace="extra-api")
    router = Router()

    @router.post("/widgets")
    def make_widget(request):
        return {}

    extra.add_router("/", router)
    schema = api.get_openapi_schema()
    schema["paths"].update(extra.get_openapi_schema(path_prefix="/extra/")["paths"])
    assert uncovered_operations(schema) == ["POST /extra/widgets tests_test_policy_coverage_make_widget"]
    missing = uncovered_urls([*get_resolver().url_patterns, path("extra/", extra.urls)])
    assert "extra/widgets tests_test_policy_coverage_make_widget" in missing


def test_it_reports_a_websocket_route_without_an_entry():
    from channels.generic.websocket import AsyncJsonWebsocketConsumer
    from django.urls import re_path

    class UnlistedConsumer(AsyncJsonWebsocketConsumer):
        pass

    extra = [*websocket_urlpatterns, re_path(r"^ws/unlisted/$", UnlistedConsumer.as_asgi())]
    assert uncovered_websockets(extra) == ["^ws/unlisted/$"]


class UrlsWithAnUnlistedPage:
    from config.urls import urlpatterns as site

    urlpatterns = [path("unlisted/", team_view("team.view")(_unlisted_page), name="unlisted-page"), *site]


@pytest.mark.django_db
def test_it_refuses_a_page_whose_url_has_no_entry(client, settings):
    """Enforced, not only listed: a team page missing from the table is refused, whatever it declares."""
    user = get_user_model().objects.create_user("solo")
    do_create_team("Solo", user)
    client.force_login(user)
    settings.ROOT_URLCONF = UrlsWithAnUnlistedPage
    assert Client().get("/unlisted/").status_code == 302  # signed out: to the sign-in page
    assert client.get("/unlisted/").status_code == 403


def _api_with_an_unlisted_operation() -> NinjaAPI:
    from config.api_policy import enforce_policy
    from mcpgateway.api_caller import ApiDenied
    from orchestrator.api_auth import ApiKeyAuth

    extra = NinjaAPI(urls_namespace="unlisted-api", auth=[ApiKeyAuth()])
    extra.add_decorator(enforce_policy, mode="operation")
    router = Router()

    @router.get("/agents")
    def list_agents(request):  # same name as a listed operation, other module: another id
        return {"reached": True}

    extra.add_router("/", router)
    extra.exception_handler(ApiDenied)(lambda request, exc: extra.create_response(request, {"error": exc.message}, status=403))
    return extra


class UrlsWithAnUnlistedOperation:
    urlpatterns = [path("unlisted-api/", _api_with_an_unlisted_operation().urls)]


@pytest.mark.django_db
def test_it_refuses_an_api_operation_without_an_entry(client, settings):
    from mcpgateway.actions.access import do_create_api_key

    user = get_user_model().objects.create_user("solo")
    team = do_create_team("Solo", user)
    token = do_create_api_key(team.pk, "all", user, scopes=["read", "run", "admin"])[1]
    settings.ROOT_URLCONF = UrlsWithAnUnlistedOperation
    response = client.get("/unlisted-api/agents", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 403
    assert "no policy entry" in response.json()["error"]

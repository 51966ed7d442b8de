"""Every model has an admin page that lists, searches and filters."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.urls import reverse

from orchestrator.demo import seed_demo
from tests.conftest import execute, start

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_registers_every_orchestrator_model_searchable_and_filterable():
    from django.apps import apps

    for model in apps.get_app_config("orchestrator").get_models():
        model_admin = admin.site._registry.get(model)
        assert model_admin is not None, f"{model.__name__} has no admin"
        assert model_admin.search_fields, f"{model.__name__} admin is not searchable"
        assert model_admin.list_filter or model.__name__ == "Team", f"{model.__name__} admin has no filters"


def test_it_serves_the_admin_pages_with_data(client):
    team, username, password = seed_demo(password="demo-pass-123")
    from orchestrator.models import Pipeline

    run = execute(start(Pipeline.objects.get(team=team, slug="code-review"), {"task": "t"}))
    assert client.login(username=username, password=password)
    from django.apps import apps

    for model in apps.get_app_config("orchestrator").get_models():
        url = reverse(f"admin:orchestrator_{model._meta.model_name}_changelist")
        assert client.get(url, {"q": "a"}).status_code == 200, url
    page = client.get(reverse("admin:orchestrator_run_change", args=[run.pk]))
    assert page.status_code == 200 and b"coder#1" in page.content
    assert client.get("/", follow=True).status_code == 200

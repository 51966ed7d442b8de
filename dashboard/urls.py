"""Dashboard URL map: each area owns its routes in dashboard/views/<area>.py (`urlpatterns`)."""

from django.contrib.auth import views as auth_views
from django.urls import include, path

from dashboard.views import home

urlpatterns = [
    path("", home.index, name="home"),
    path("templates/<slug:slug>/create/", home.create_from_template, name="template-create"),
    path("healthz", home.healthz, name="healthz"),
    path("metrics", home.metrics, name="metrics"),
    path(".well-known/agentdeck/trace-keys.json", home.trace_keys, name="trace-keys"),
    path("readyz", home.readyz, name="readyz"),
    path("schemas/pipeline-spec.json", home.spec_schema, name="spec-schema"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("teams/switch/", home.switch_team, name="switch-team"),
    path("runs/", include("dashboard.views.runs")),
    path("pipelines/", include("dashboard.views.pipelines")),
    path("agents/", include("dashboard.views.agents")),
    path("review/", include("dashboard.views.review")),
    path("tools/", include("dashboard.views.tools")),
    path("usage/", include("dashboard.views.usage")),
    path("evals/", include("dashboard.views.evals")),
    path("observability/", include("dashboard.views.observability")),
]

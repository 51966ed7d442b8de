"""Dashboard pages. The full product UI is built on these (live runs, builder, review queue)."""

from django.urls import path

from dashboard import views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("schemas/pipeline-spec.json", views.spec_schema, name="spec-schema"),
]

"""Dashboard views: thin, each parses, calls one query or action, renders."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from orchestrator.engine.spec import spec_json_schema
from orchestrator.models import Membership, Run


@login_required
def home(request: HttpRequest) -> HttpResponse:
    team_ids = Membership.objects.filter(user=request.user).values_list("team_id", flat=True)
    runs = Run.objects.filter(team_id__in=team_ids).select_related("pipeline_version__pipeline")[:20]
    return render(request, "dashboard/home.html", {"runs": runs})


def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok", content_type="text/plain")


def spec_schema(request: HttpRequest) -> JsonResponse:
    return JsonResponse(spec_json_schema())

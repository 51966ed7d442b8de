"""Landing (pipeline templates, recent runs, what waits for me), health, the spec schema,
and the team switcher."""

from __future__ import annotations

import hmac

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from dashboard.access import SESSION_KEY, can, memberships, team_view
from dashboard.readiness import may_see_details, readiness
from mcpgateway.whole_numbers import whole
from orchestrator.engine.spec import spec_json_schema

RECENT_RUNS = 10


@team_view("team.view")
def index(request: HttpRequest) -> HttpResponse:
    """What to do first: templates to start from, recent runs (eval runs hidden unless asked),
    and the review items waiting for this user."""
    from django.db.models import Q

    from orchestrator.models import Agent, Pipeline, ReviewItem, Run
    from orchestrator.pipeline_templates import TEMPLATES

    team = request.team
    with_evals = request.GET.get("evals") == "1"
    runs = Run.objects.filter(team=team).select_related("pipeline_version__pipeline").order_by("-created_at")
    if not with_evals:
        runs = runs.exclude(pipeline_version__pipeline__internal=True)
    waiting = []
    if can(request, "review.decide"):
        waiting = list(ReviewItem.objects.filter(team=team, status=ReviewItem.Status.PENDING)
                       .filter(Q(assigned_to__isnull=True) | Q(assigned_to=request.user))
                       .select_related("run__pipeline_version__pipeline").order_by("created_at")[:10])
    return render(request, "dashboard/home.html", {
        "templates": list(TEMPLATES.values()),
        "can_create": can(request, "pipeline.edit"),
        "runs": list(runs[:RECENT_RUNS]),
        "with_evals": with_evals,
        "waiting": waiting,
        "counts": {"pipelines": Pipeline.objects.filter(team=team, internal=False).count(),
                   "agents": Agent.objects.filter(team=team, internal=False).count()},
    })


@require_POST
@team_view("pipeline.edit")
def create_from_template(request: HttpRequest, slug: str) -> HttpResponse:
    """Create the template's pipeline (and its missing agents and tools) in the team, then open it."""
    from orchestrator.actions.errors import ActionError
    from orchestrator.pipeline_templates import do_create_from_template

    try:
        pipeline, notes = do_create_from_template(request.team, slug, request.user)
    except ActionError as exc:
        messages.error(request, exc.message)
        return redirect("home")
    messages.success(request, f"Created {pipeline.name} from a template" + (f" ({'; '.join(notes)})" if notes else "")
                     + ". Its agents are scripted: set a real model on each agent's page.")
    return redirect("pipeline-builder", pk=pipeline.pk)


def trace_keys(request: HttpRequest) -> JsonResponse:
    """The public keys signed trace exports can be checked with."""
    from orchestrator.trace_files import public_keys, signing_key

    if not public_keys():
        signing_key()
    keys = [{"kid": kid, "alg": "Ed25519", "public_key": value} for kid, value in public_keys().items()]
    return JsonResponse({"keys": keys})


def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness: the process answers."""
    return HttpResponse("ok", content_type="text/plain")


def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: the database answers, Redis answers (when configured), workers answer (when
    runs go to Celery); 503 otherwise. Which part failed, versions and worker counts only for
    staff or `Authorization: Bearer <METRICS_TOKEN>`; everyone else gets the status alone."""
    report = readiness()
    ok = all(part["ok"] for part in report.values())
    body: dict[str, object] = {"status": "ok" if ok else "unavailable"}
    if may_see_details(request):
        body.update({"ready": ok, **report})
    return JsonResponse(body, status=200 if ok else 503)


def spec_schema(request: HttpRequest) -> JsonResponse:
    return JsonResponse(spec_json_schema())


@login_required
@require_POST
def switch_team(request: HttpRequest) -> HttpResponse:
    team_id = whole(request.POST.get("team", "")) or 0  # ("²" or 5,000 digits was a 500)
    if any(m.team_id == team_id for m in memberships(request)):
        request.session[SESSION_KEY] = team_id
    target = request.POST.get("next", "/")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        target = "/"
    return redirect(target)


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics of every process sharing PROMETHEUS_MULTIPROC_DIR, plus database gauges.

    Needs `Authorization: Bearer <METRICS_TOKEN>` or a staff session."""
    from django.conf import settings
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        CollectorRegistry,
        generate_latest,
        multiprocess,
    )

    from orchestrator.metrics import DatabaseCollector

    token = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    allowed = (bool(token) and hmac.compare_digest(header.encode(), f"Bearer {token}".encode())) or (
        request.user.is_authenticated and request.user.is_staff)
    if not allowed:
        response = HttpResponse("metrics need a bearer token (METRICS_TOKEN) or a staff login\n", status=401,
                                content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(DatabaseCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)

"""The runs pages: the live list, the start form, the live run page and its actions.

Each view parses the request, calls one query (`dashboard.runs`) or one action
(`orchestrator.actions`), and renders. Live updates arrive over the websockets in
`dashboard.consumers`; the pages then fetch the partials these views render
(`run_table.html`, `run_fragments.html`) instead of reloading.
"""

from __future__ import annotations

import json

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.utils.http import urlencode
from django.views.decorators.http import require_POST

from dashboard.access import can, team_view
from dashboard.runs.forms import RunFilterForm, RunInputForm
from dashboard.runs.queries import Cursor, runs_page
from dashboard.runs.tree import build_run_tree
from orchestrator.actions import do_cancel_run, do_resume_run, do_start_run
from orchestrator.actions.errors import ActionError
from orchestrator.engine.errors import SpecError
from orchestrator.engine.spec import parse_spec
from orchestrator.events import verify_chain
from orchestrator.models import (
    ACTIVE_RUN_STATUSES,
    Pipeline,
    PipelineVersion,
    Run,
    RunEvent,
    RunStatus,
)


def _is_fragment(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


@team_view("run.view")
def runs_list(request: HttpRequest) -> HttpResponse:
    """The team's runs, filtered, newest first, a keyset page at a time; live through the team socket."""
    form = RunFilterForm(request.team, request.GET)
    page = runs_page(request.team.pk, form.filters(), before=Cursor.decode(request.GET.get("before")),
                     after=Cursor.decode(request.GET.get("after")))
    kept = {k: v for k, v in request.GET.items() if k not in ("before", "after") and v}
    context = {
        "form": form, "page": page, "filtered": bool(kept),
        "newer_url": f"?{urlencode({**kept, 'after': page.newer.encode()})}" if page.newer else "",
        "older_url": f"?{urlencode({**kept, 'before': page.older.encode()})}" if page.older else "",
    }
    template = "dashboard/runs/run_table.html" if _is_fragment(request) else "dashboard/runs/list.html"
    return render(request, template, context)


def _version_for(request: HttpRequest) -> PipelineVersion | None:
    """The pipeline version named by `?pipeline=<id>&version=<n>` (latest without `version`), in the current team."""
    pipeline_id = request.GET.get("pipeline", "")
    if not pipeline_id.isdigit():
        return None
    pipeline = get_object_or_404(Pipeline, pk=int(pipeline_id), team=request.team)
    number = request.GET.get("version", "")
    versions = pipeline.versions.select_related("pipeline")
    version = versions.filter(number=int(number)).first() if number.isdigit() else versions.order_by("-number").first()
    if version is None:
        raise Http404("no such pipeline version")
    return version


@team_view("run.start")
def run_start(request: HttpRequest) -> HttpResponse:
    """The start form: one field per declared input; a valid submission starts the run and opens its page."""
    version = _version_for(request)
    if version is None:
        pipelines = Pipeline.objects.filter(team=request.team, internal=False).order_by("name")
        return render(request, "dashboard/runs/start.html", {"pipelines": pipelines})
    try:
        spec = parse_spec(version.spec)
    except SpecError as exc:
        return render(request, "dashboard/runs/start.html", {"version": version, "spec_error": exc}, status=422)
    form = RunInputForm(spec, request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            run = do_start_run(version, form.run_input(), request.user)
        except ActionError as exc:
            form.add_action_error(exc.field, exc.message)
        except SpecError as exc:
            form.add_error(None, str(exc))
        else:
            return redirect("run-detail", pk=run.pk)
    status = 422 if request.method == "POST" else 200
    return render(request, "dashboard/runs/start.html", {"version": version, "form": form}, status=status)


def _run_of_team(request: HttpRequest, pk: int) -> Run:
    return get_object_or_404(Run.objects.select_related("pipeline_version__pipeline", "created_by"),
                             pk=pk, team=request.team)


def _run_context(request: HttpRequest, run: Run) -> dict[str, object]:
    builder = can(request, "run.cancel")
    pending = run.review_items.filter(status="pending").count()
    return {
        "run": run,
        "pending_reviews": pending,
        "can_cancel": builder and (run.status in ACTIVE_RUN_STATUSES or run.status == RunStatus.WAITING_REVIEW),
        "can_resume": builder and (run.status == RunStatus.FAILED
                                   or (run.status == RunStatus.WAITING_REVIEW and pending == 0)),
    }


@team_view("run.view")
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """The live run page: header, step tree, outputs; the socket then sends what happens after `last_seq`."""
    run = _run_of_team(request, pk)
    # The chain head is read before the steps and events: whatever commits in between is
    # rendered and sent again, never missed.
    after = run.last_seq
    tree = build_run_tree(run)
    chain = verify_chain(RunEvent.objects.filter(run=run).order_by("seq")) if run.is_finished else None
    return render(request, "dashboard/runs/detail.html", {**_run_context(request, run), "tree": tree, "after": after,
                                                          "chain": chain})


@team_view("run.view")
def run_trace(request: HttpRequest, pk: int) -> HttpResponse:
    """The run's signed trace file (verify it with `manage.py trace verify` or POST /api/v1/traces/verify)."""
    from orchestrator.trace_files import export_trace

    run = _run_of_team(request, pk)
    response = HttpResponse(json.dumps(export_trace(run), indent=1, ensure_ascii=False), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="run-{run.pk}.trace.json"'
    return response


@team_view("run.view")
def run_fragments(request: HttpRequest, pk: int) -> HttpResponse:
    """Fresh partials for the live page: the header and outputs, and the named step cards (`?step=`)
    or the whole tree (`?tree=1`)."""
    run = _run_of_team(request, pk)
    tree = build_run_tree(run)
    whole = request.GET.get("tree") == "1"
    nodes = [] if whole else tree.find(request.GET.getlist("step"))
    return render(request, "dashboard/runs/run_fragments.html",
                  {**_run_context(request, run), "tree": tree, "whole_tree": whole, "nodes": nodes})


@require_POST
@team_view("run.cancel")
def run_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    run = _run_of_team(request, pk)
    try:
        do_cancel_run(run, request.user)
    except ActionError as exc:
        messages.error(request, exc.message)
    return redirect("run-detail", pk=run.pk)


@require_POST
@team_view("run.resume")
def run_resume(request: HttpRequest, pk: int) -> HttpResponse:
    run = _run_of_team(request, pk)
    try:
        do_resume_run(run, request.user)
    except ActionError as exc:
        messages.error(request, exc.message)
    return redirect("run-detail", pk=run.pk)


urlpatterns = [
    path("", runs_list, name="runs"),
    path("new/", run_start, name="run-start"),
    path("<int:pk>/", run_detail, name="run-detail"),
    path("<int:pk>/fragments/", run_fragments, name="run-fragments"),
    path("<int:pk>/cancel/", run_cancel, name="run-cancel"),
    path("<int:pk>/resume/", run_resume, name="run-resume"),
    path("<int:pk>/trace.json", run_trace, name="run-trace"),
]

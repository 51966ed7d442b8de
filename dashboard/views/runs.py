"""The runs pages: the live list, the start form, the live run page and its actions.

Each view parses the request, calls one query (`dashboard.runs`) or one action
(`orchestrator.actions`), and renders. Live updates arrive over the websockets in
`dashboard.consumers`; the pages then fetch the partials these views render
(`run_table.html`, `run_fragments.html`) instead of reloading.
"""

from __future__ import annotations

import json

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.utils import timezone
from django.utils.http import urlencode
from django.views.decorators.http import require_POST

from dashboard.access import can, team_view
from dashboard.runs.canvas import node_states, timeline
from dashboard.runs.forms import RunFilterForm, RunInputForm
from dashboard.runs.queries import Cursor, runs_page
from dashboard.runs.tree import build_run_tree
from mcpgateway.models import AuditEntry
from mcpgateway.whole_numbers import is_whole
from orchestrator.actions import do_cancel_run, do_resume_run, do_start_run
from orchestrator.actions.budget_room import budget_blocker
from orchestrator.actions.errors import ActionError
from orchestrator.actions.fork import do_fork_run
from orchestrator.engine.document_guard import DocumentError, load_typed_json
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
    StepRun,
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
    if not is_whole(pipeline_id):
        return None
    pipeline = get_object_or_404(Pipeline, pk=int(pipeline_id), team=request.team)
    number = request.GET.get("version", "")
    versions = pipeline.versions.select_related("pipeline")
    version = versions.filter(number=int(number)).first() if is_whole(number) else versions.order_by("-number").first()
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


def _discards_work(run: Run) -> dict[str, int]:
    """What cancelling would throw away: steps in flight, steps done, reviews pending (all 0: nothing)."""
    steps = dict.fromkeys(("running", "succeeded"), 0)
    for status in StepRun.objects.filter(run_id=run.pk, status__in=list(steps)).values_list("status", flat=True):
        steps[status] += 1
    return {"running": steps["running"], "done": steps["succeeded"],
            "reviews": run.review_items.filter(status="pending").count()}


def _run_context(request: HttpRequest, run: Run) -> dict[str, object]:
    builder = can(request, "run.cancel")
    pending = run.review_items.filter(status="pending").count()
    can_cancel = builder and (run.status in ACTIVE_RUN_STATUSES or run.status == RunStatus.WAITING_REVIEW)
    return {
        "run": run,
        "pending_reviews": pending,
        "can_cancel": can_cancel,
        "discards": _discards_work(run) if can_cancel else None,
        "can_resume": builder and (run.status == RunStatus.FAILED
                                   or (run.status == RunStatus.WAITING_REVIEW and pending == 0)),
        "may_fork": can(request, "run.fork"),
        "can_fork": can(request, "run.fork") and run.status not in ACTIVE_RUN_STATUSES,
        "can_start": can(request, "run.start"),
        "budget_stop": budget_blocker(run) if run.status in (RunStatus.WAITING_REVIEW, RunStatus.FAILED) else "",
        "forked_from": RunEvent.objects.filter(run_id=run.pk, type="run.forked").values_list("data", flat=True).first(),
    }


@team_view("run.view")
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """The live run page: header, step tree, outputs; the socket then sends what happens after `last_seq`."""
    run = _run_of_team(request, pk)
    # The chain head is read before the steps and events: whatever commits in between is
    # rendered and sent again, never missed.
    after = run.last_seq
    tree = build_run_tree(run)
    now = timezone.now()
    chain = verify_chain(RunEvent.objects.filter(run=run).order_by("seq")) if run.is_finished else None
    return render(request, "dashboard/runs/detail.html", {
        **_run_context(request, run), "tree": tree, "after": after, "chain": chain,
        "spec": run.pipeline_version.spec, "states": node_states(tree, now), "timeline": timeline(tree, now)})


@team_view("run.view")
def run_canvas_data(request: HttpRequest, pk: int) -> JsonResponse:
    """The diagram's node states (per step id) for the live page, as JSON."""
    run = _run_of_team(request, pk)
    after = run.last_seq
    return JsonResponse({"seq": after, "status": run.status, "nodes": node_states(build_run_tree(run), timezone.now())})


@team_view("run.view")
def run_step_panel(request: HttpRequest, pk: int, key: str) -> HttpResponse:
    """The side panel of one step instance: input, output, turns with their tool calls in the
    open, the gateway's audit rows for the step (this team's only), and the fork form."""
    run = _run_of_team(request, pk)
    tree = build_run_tree(run)
    node = tree.index.get(key)
    if node is None:
        raise Http404("no such step in this run")
    audit = AuditEntry.objects.filter(team_id=request.team.pk, run_id=run.pk, step_key=key).order_by("created_at", "id")
    siblings = [k for k, n in tree.index.items() if n.step.id == node.step.id and n.row is not None]
    return render(request, "dashboard/runs/step_panel.html", {
        **_run_context(request, run), "node": node, "audit": audit[:200], "siblings": siblings,
        "editable": node.kind in ("agent", "review") and node.row is not None})


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
                  {**_run_context(request, run), "tree": tree, "whole_tree": whole, "nodes": nodes,
                   "timeline": timeline(tree, timezone.now())})


@require_POST
@team_view("run.cancel")
def run_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    """Cancel; when that discards work (steps done or running, reviews pending) only once
    confirmed with a reason (`confirm=1`, `reason`), else the confirmation is shown."""
    run = _run_of_team(request, pk)
    discards = _discards_work(run)
    reason = request.POST.get("reason", "").strip()
    if not run.is_finished and any(discards.values()) and not (request.POST.get("confirm") == "1" and reason):
        error = "Say why you cancel it: the reason is kept in the run's trace." if request.POST.get("confirm") else ""
        return render(request, "dashboard/runs/cancel_confirm.html",
                      {"run": run, "discards": discards, "error": error, "reason": reason},
                      status=400 if error else 200)
    try:
        do_cancel_run(run, request.user, reason=reason)
    except ActionError as exc:
        messages.error(request, exc.message)
    return redirect("run-detail", pk=run.pk)


@require_POST
@team_view("run.start")
def run_again(request: HttpRequest, pk: int) -> HttpResponse:
    """Start a new run of the same pipeline version with the same input (the page asks first)."""
    run = _run_of_team(request, pk)
    try:
        new = do_start_run(run.pipeline_version, run.input, request.user)
    except (ActionError, SpecError) as exc:
        messages.error(request, getattr(exc, "message", str(exc)))
        return redirect("run-detail", pk=run.pk)
    messages.success(request, f"Started run #{new.pk} with the input of run #{run.pk}.")
    return redirect("run-detail", pk=new.pk)


@require_POST
@team_view("run.fork")
def run_fork(request: HttpRequest, pk: int) -> HttpResponse:
    """Fork from a step (`step`), with the edited output (`output`, JSON when the step's output
    is not text) when `edit` is set; opens the new run."""
    run = _run_of_team(request, pk)
    key = request.POST.get("step", "")
    edited = None
    if request.POST.get("edit") == "1":
        text = request.POST.get("output", "")
        original = StepRun.objects.filter(run_id=run.pk, key=key).values_list("output", flat=True).first()
        if isinstance(original, str) or original is None:
            edited = text
        else:
            try:
                edited = load_typed_json(text)
            except DocumentError as exc:  # a syntax error, NaN or 1e400 (no database stores them), too deep
                messages.error(request, f"The edited output is not valid JSON: {exc.problem.message}.")
                return redirect("run-detail", pk=run.pk)
    try:
        new = do_fork_run(run, key, edited_output=edited, user=request.user)
    except (ActionError, SpecError) as exc:
        messages.error(request, getattr(exc, "message", str(exc)))
        return redirect("run-detail", pk=run.pk)
    messages.success(request, f"Forked run #{run.pk} at step {key}{' with an edited output' if edited is not None else ''}.")
    return redirect("run-detail", pk=new.pk)


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
    path("<int:pk>/canvas.json", run_canvas_data, name="run-canvas-data"),
    path("<int:pk>/steps/<str:key>/", run_step_panel, name="run-step-panel"),
    path("<int:pk>/again/", run_again, name="run-again"),
    path("<int:pk>/fork/", run_fork, name="run-fork"),
]

"""Evaluations: suites, eval runs with live progress, comparisons, charts over time, exports."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.views.decorators.http import require_POST

from authz.policy import is_instance_operator
from dashboard import evals_display
from dashboard.access import can, team_view
from mcpgateway.errors import GatewayError
from mcpgateway.whole_numbers import is_whole
from orchestrator.actions.errors import ActionError
from orchestrator.evals.harness import do_create_eval_run, submit_eval_run
from orchestrator.evals.metrics import metric_value
from orchestrator.evals.reports import compare, to_json, to_junit
from orchestrator.evals.spec import SuiteFileError
from orchestrator.evals.suite_files import do_import_suite, export_suite, install_injection_suite
from orchestrator.management.commands.eval import CONFIRM, TAINT_ALLOWED
from orchestrator.models import EvalRun, EvalRunStatus, EvalSuite

CHART_METRICS = ("completion", "tool_accuracy", "self_healing", "block_rate", "utility")


@team_view("eval.view")
def index(request: HttpRequest, status: int = 200, **extra: Any) -> HttpResponse:
    suites = (EvalSuite.objects.filter(team=request.team).select_related("agent", "pipeline_version__pipeline")
              .prefetch_related("eval_runs"))
    rows = [{"suite": s, "cases": s.cases.live().count(), "last": s.eval_runs.order_by("-created_at").first()} for s in suites]
    return render(request, "dashboard/evals/index.html", {
        "rows": rows, "can_edit": can(request, "eval.edit"), **extra}, status=status)


@require_POST
@team_view("eval.edit")
def import_suite(request: HttpRequest) -> HttpResponse:
    text = request.POST.get("text", "")
    try:
        suite = do_import_suite(request.team, text)
    except SuiteFileError as exc:
        return index(request, status=400, errors=exc.errors, text=text)
    except ActionError as exc:
        return index(request, status=400, errors=[{"field": exc.field, "message": exc.message}], text=text)
    messages.success(request, f"Imported {suite.name}: {suite.cases.live().count()} cases.")
    return redirect("eval-suite", suite.pk)


@require_POST
@team_view("eval.edit")
def install_injection(request: HttpRequest) -> HttpResponse:
    try:
        suite = install_injection_suite(request.team, offer=is_instance_operator(request.user))
    except GatewayError as exc:  # e.g. the team has its own server named like the suite's
        messages.error(request, exc.message)
        return redirect("evals")
    messages.success(request, f"Installed {suite.name} with the office tool server and the office-assistant agent.")
    return redirect("eval-suite", suite.pk)


def _suite(request: HttpRequest, pk: int) -> EvalSuite:
    return get_object_or_404(EvalSuite.objects.select_related("agent", "judge_agent", "pipeline_version__pipeline"),
                             pk=pk, team=request.team)


@team_view("eval.view")
def suite_detail(request: HttpRequest, pk: int, status: int = 200, **extra: Any) -> HttpResponse:
    suite = _suite(request, pk)
    runs = list(suite.eval_runs.order_by("-created_at")[:50])
    finished = [r for r in reversed(runs) if r.status == EvalRunStatus.FINISHED]
    chart = {"labels": [f"#{r.pk}" + (f" {r.label}" if r.label else "") for r in finished],
             # (rates are stored exact: the chart reads 4 decimals)
             "series": {m: [_rounded(metric_value(r.metrics, m)) for r in finished] for m in CHART_METRICS}}
    cases = list(suite.cases.live())
    for case in cases:
        case.input_text = evals_display.input_text(case.input)
    return render(request, "dashboard/evals/suite.html", {
        "suite": suite, "cases": cases, "runs": runs, "chart": chart,
        "can_edit": can(request, "eval.edit"), **extra}, status=status)


@require_POST
@team_view("eval.run")
def start_eval(request: HttpRequest, pk: int) -> HttpResponse:
    suite = _suite(request, pk)
    post = request.POST
    defences: dict[str, Any] = {}
    if post.get("spotlight") == "on":
        defences["spotlight"] = True
    if post.get("detector") == "on":
        defences.update(detector="rules", taint_allowed_tools=_names(post.get("taint_allowed_tools", ""), TAINT_ALLOWED))
    if post.get("least_privilege") == "on":
        defences["least_privilege"] = True
    if post.get("confirm") == "on":
        defences["confirm_tools"] = _names(post.get("confirm_tools", ""), CONFIRM)
    baseline = None
    if is_whole(post.get("baseline", "")):
        baseline = EvalRun.objects.filter(pk=int(post["baseline"]), suite=suite).first()
    try:
        eval_run = do_create_eval_run(suite, defences=defences, label=post.get("label", ""), baseline=baseline,
                                      user=request.user)
    except ActionError as exc:
        return suite_detail(request, pk, status=400, error=exc.message)
    submit_eval_run(eval_run.pk)
    return redirect("eval-run", eval_run.pk)


def _names(text: str, default: list[str]) -> list[str]:
    names = [n.strip() for n in text.replace("\n", ",").split(",") if n.strip()]
    return names or list(default)


def _eval_run(request: HttpRequest, pk: int) -> EvalRun:
    return get_object_or_404(EvalRun.objects.select_related("suite", "baseline"), pk=pk, suite__team=request.team)


@team_view("eval.view")
def eval_run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    eval_run = _eval_run(request, pk)
    context = {"eval_run": eval_run, "results": eval_run.results.select_related("case").order_by("case__position"),
               "defences_text": evals_display.defences_text(eval_run.defences),
               "others": eval_run.suite.eval_runs.exclude(pk=pk).filter(status=EvalRunStatus.FINISHED)[:20],
               "live": eval_run.status in (EvalRunStatus.QUEUED, EvalRunStatus.RUNNING)}
    if request.headers.get("HX-Request"):
        return render(request, "dashboard/evals/_progress.html", context)
    return render(request, "dashboard/evals/run.html", context)


@team_view("eval.view")
def eval_run_compare(request: HttpRequest, pk: int, base: int) -> HttpResponse:
    current, baseline = _eval_run(request, pk), _eval_run(request, base)
    diff = compare(current, baseline)
    rows = evals_display.metric_rows(diff["metrics"], baseline.metrics, current.metrics)
    return render(request, "dashboard/evals/compare.html",
                  {"current": current, "baseline": baseline, "diff": diff, "metric_rows": rows})


@team_view("eval.view")
def export(request: HttpRequest, pk: int, fmt: str) -> HttpResponse:
    eval_run = _eval_run(request, pk)
    if fmt == "json":
        response = HttpResponse(to_json(eval_run), content_type="application/json")
    else:
        response = HttpResponse(to_junit(eval_run), content_type="application/xml")
    response["Content-Disposition"] = f'attachment; filename="eval-run-{eval_run.pk}.{fmt}"'
    return response


@team_view("eval.view")
def suite_export(request: HttpRequest, pk: int) -> HttpResponse:
    response = HttpResponse(export_suite(_suite(request, pk)), content_type="application/yaml")
    response["Content-Disposition"] = f'attachment; filename="{_suite(request, pk).slug}.yaml"'
    return response


urlpatterns = [
    path("", index, name="evals"),
    path("import/", import_suite, name="eval-import"),
    path("install-injection/", install_injection, name="eval-install-injection"),
    path("suites/<int:pk>/", suite_detail, name="eval-suite"),
    path("suites/<int:pk>/run/", start_eval, name="eval-start"),
    path("suites/<int:pk>/export.yaml", suite_export, name="eval-suite-export"),
    path("runs/<int:pk>/", eval_run_detail, name="eval-run"),
    path("runs/<int:pk>/compare/<int:base>/", eval_run_compare, name="eval-compare"),
    path("runs/<int:pk>/export.json", export, {"fmt": "json"}, name="eval-export-json"),
    path("runs/<int:pk>/export.xml", export, {"fmt": "xml"}, name="eval-export-junit"),
]


def _rounded(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value

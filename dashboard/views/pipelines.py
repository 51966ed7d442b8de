"""The pipelines pages: the team's list, the visual builder (create and edit), live
validation for the builder, and version history with diffs.

The builder is a plain-JS page (`static/js/builder.js`, its diagram drawn by
`static/js/flowcanvas.js`) that edits the spec document in the browser and talks JSON to
`validate` (check_spec, plus the YAML form of the document) and to `create` / `save`
(do_create_pipeline / do_save_pipeline_version). Every save is a new immutable version;
viewers see the builder read-only and the server refuses their saves.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

import yaml
from django.contrib import messages
from django.db import transaction
from django.db.models import Count, Max
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import path, reverse
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_POST

from dashboard.access import can, team_view
from mcpgateway.whole_numbers import is_whole
from orchestrator.actions import do_create_pipeline, do_save_pipeline_version
from orchestrator.actions.errors import ActionError, Conflict
from orchestrator.actions.pipelines import check_spec
from orchestrator.engine.document_guard import (
    MAX_DOCUMENT_DEPTH,
    DocumentError,
    deeper_than,
    load_text,
    scan_data,
)
from orchestrator.engine.errors import SpecError
from orchestrator.engine.spec_bounds import nesting_errors
from orchestrator.models import Agent, Pipeline, PipelineVersion, Team

NAME_MAX = 100
NOTE_MAX = 200
BLANK_SPEC: dict[str, Any] = {"inputs": {}, "steps": [], "outputs": {}}
PALETTE = [  # (kind, label, help) for the builder's drag palette
    ("agent", "Agent", "One agent answers a prompt, using its tools"),
    ("loop", "Loop", "Repeat a body until a condition holds"),
    ("parallel", "Parallel", "Branches at the same time, then an optional join agent"),
    ("branch", "Branch", "If / else on an earlier output"),
    ("review", "Review gate", "A human gate: the run pauses in the review queue"),
    ("sequence", "Sequence", "Steps one after another (a group)"),
]


# ---------------------------------------------------------------------------- pages


@team_view("pipeline.view")
@require_GET
def index(request: HttpRequest) -> HttpResponse:
    pipelines = (
        Pipeline.objects.filter(team=request.team, internal=False)
        .annotate(latest_number=Max("versions__number"), last_edit=Max("versions__created_at"),
                  runs_count=Count("versions__runs", distinct=True))
        .order_by("name")
    )
    return render(request, "dashboard/pipelines/list.html", {"pipelines": pipelines})


@team_view("pipeline.edit")
def new(request: HttpRequest) -> HttpResponse:
    """GET: an empty builder (or a copy of `?from=<pipeline id>`). POST: create the pipeline."""
    if request.method == "POST":
        return _create(request)
    spec = BLANK_SPEC
    source_id = request.GET.get("from", "")
    if is_whole(source_id):
        spec = _version(_pipeline(request, int(source_id)), None).spec
    return render(request, "dashboard/pipelines/builder.html", _builder_context(request, None, None, spec))


@team_view("pipeline.view")
def builder(request: HttpRequest, pk: int) -> HttpResponse:
    """GET: the builder on the latest version (or `?version=<n>`). POST (builder+): save a new version."""
    pipeline = _pipeline(request, pk)
    if request.method == "POST":
        return _save(request, pipeline)
    version = _version(pipeline, request.GET.get("version"))
    return render(request, "dashboard/pipelines/builder.html",
                  _builder_context(request, pipeline, version, version.spec))


@team_view("pipeline.view")
@require_POST
def validate(request: HttpRequest) -> JsonResponse:
    """Check a spec for the builder: `{"spec": {...}}` or `{"text": "...", "format": "yaml"|"json"}`.

    Answers `{"valid", "errors": [{"path", "message"}], "document", "yaml"}`; `document` is the
    parsed text (so the builder can adopt edits made in the YAML view), `yaml` its YAML form.
    """
    body = _json_body(request)
    if body is None:
        return JsonResponse({"valid": False, "errors": [{"path": "", "message": "send a JSON object"}]}, status=400)
    try:
        document, parse_error = _document(body)
    except DocumentError as exc:  # too deep, NUL, YAML alias: refused before anything recurses
        return JsonResponse({"valid": False, "parse_error": True,
                             "errors": [{"path": exc.problem.path, "message": exc.problem.message}]}, status=422)
    if parse_error:
        return JsonResponse({"valid": False, "parse_error": True, "errors": [{"path": "", "message": parse_error}]})
    bounds = _bound_errors(document)
    if bounds:
        return JsonResponse({"valid": False, "errors": bounds}, status=422)
    errors = _spec_errors(request.team, document)
    return JsonResponse({"valid": not errors, "errors": errors, "document": document, "yaml": to_yaml(document)})


@team_view("pipeline.view")
@require_GET
def versions(request: HttpRequest, pk: int) -> HttpResponse:
    pipeline = _pipeline(request, pk)
    rows = list(pipeline.versions.select_related("created_by").annotate(runs_count=Count("runs")).order_by("-number"))
    return render(request, "dashboard/pipelines/versions.html", {"pipeline": pipeline, "versions": rows})


@team_view("pipeline.view")
@require_GET
def version(request: HttpRequest, pk: int, number: int) -> HttpResponse:
    pipeline = _pipeline(request, pk)
    shown = get_object_or_404(PipelineVersion.objects.select_related("created_by"), pipeline=pipeline, number=number)
    previous = pipeline.versions.filter(number__lt=number).order_by("-number").first()
    deep = deeper_than(shown.spec, MAX_DOCUMENT_DEPTH)
    return render(request, "dashboard/pipelines/version.html", {
        "pipeline": pipeline, "version": shown, "previous": previous,
        "spec_json": pretty_json(shown.spec),
        "spec_yaml": TOO_DEEP_FOR_YAML if deep else to_yaml(shown.spec),
    })


@team_view("pipeline.view")
@require_GET
def diff(request: HttpRequest, pk: int) -> HttpResponse:
    """`?a=<n>&b=<n>` (default: the two latest versions), unified or `&view=split`."""
    pipeline = _pipeline(request, pk)
    numbers = list(pipeline.versions.order_by("-number").values_list("number", flat=True))
    b = _version(pipeline, request.GET.get("b"))
    default_a = next((n for n in numbers if n < b.number), b.number)
    a = _version(pipeline, request.GET.get("a") or str(default_a))
    left, right = pretty_json(a.spec).splitlines(), pretty_json(b.spec).splitlines()
    split = request.GET.get("view") == "split"
    return render(request, "dashboard/pipelines/diff.html", {
        "pipeline": pipeline, "a": a, "b": b, "numbers": numbers, "split": split,
        "lines": [] if split else unified_lines(left, right, f"v{a.number}", f"v{b.number}"),
        "rows": split_rows(left, right) if split else [],
        "changed": left != right,
    })


# ---------------------------------------------------------------------------- saving


def _create(request: HttpRequest) -> JsonResponse:
    body = _json_body(request)
    if body is None:
        return JsonResponse({"errors": [], "form_errors": {"": "send a JSON object"}}, status=400)
    name = str(body.get("name") or "").strip()
    note = str(body.get("note") or "").strip()
    form_errors = {}
    if len(note) > NOTE_MAX:
        form_errors["note"] = f"At most {NOTE_MAX} characters."
    if not name:
        form_errors["name"] = "A pipeline needs a name."
    elif len(name) > NAME_MAX:
        form_errors["name"] = f"At most {NAME_MAX} characters."
    elif not slugify(name):
        form_errors["name"] = "Use some letters or digits: the pipeline's slug is made from its name."
    spec = body.get("spec")
    spec_errors = _spec_errors(request.team, spec) if isinstance(spec, dict) else [
        {"path": "", "message": "the spec must be an object with a `steps` list"}]
    if form_errors or spec_errors:
        return JsonResponse({"errors": spec_errors, "form_errors": form_errors}, status=400)
    try:
        with transaction.atomic():
            pipeline = do_create_pipeline(request.team, name, spec, request.user)
            if note:  # do_create_pipeline notes every first version as "created"; keep what was typed
                pipeline.versions.filter(number=1).update(note=note)
    except ActionError as exc:
        # The slug comes from the name, so a clash is the name's to fix.
        return JsonResponse({"errors": [], "form_errors": {"name": exc.message}}, status=400)
    except SpecError as exc:
        return JsonResponse({"errors": exc.errors, "form_errors": {}}, status=400)
    messages.success(request, f"Created {pipeline.name} (version 1).")
    return JsonResponse({"ok": True, "version": 1, "url": reverse("pipeline-builder", args=[pipeline.pk])})


def _save(request: HttpRequest, pipeline: Pipeline) -> JsonResponse:
    if not can(request, "pipeline.edit"):
        return JsonResponse({"errors": [], "form_errors": {"": "Only builders and owners can save pipelines."}},
                            status=403)
    body = _json_body(request)
    if body is None or not isinstance(body.get("spec"), dict):
        return JsonResponse({"errors": [{"path": "", "message": "send {\"spec\": {...}, \"note\": \"...\"}"}],
                             "form_errors": {}}, status=400)
    note = str(body.get("note") or "").strip()
    if len(note) > NOTE_MAX:
        return JsonResponse({"errors": [], "form_errors": {"note": f"At most {NOTE_MAX} characters."}}, status=400)
    base = body.get("base_version")
    try:
        saved = do_save_pipeline_version(pipeline, body["spec"], request.user, note=note,
                                         base_version=base if isinstance(base, int) and not isinstance(base, bool) else None)
    except SpecError as exc:
        return JsonResponse({"errors": exc.errors, "form_errors": {}}, status=400)
    except Conflict as exc:
        return JsonResponse({"errors": [], "form_errors": {"": exc.message}, "conflict": True}, status=409)
    messages.success(request, f"Saved version {saved.number} of {pipeline.name}.")
    return JsonResponse({"ok": True, "version": saved.number, "url": reverse("pipeline-builder", args=[pipeline.pk])})


# ---------------------------------------------------------------------------- helpers


def _pipeline(request: HttpRequest, pk: int) -> Pipeline:
    """The current team's pipeline; another team's is a 404, never a 403 that confirms it exists."""
    return get_object_or_404(Pipeline, pk=pk, team=request.team)


def _version(pipeline: Pipeline, number: str | None) -> PipelineVersion:
    if is_whole(number):
        return get_object_or_404(PipelineVersion, pipeline=pipeline, number=int(number))
    latest = pipeline.latest_version()
    if latest is None:
        raise Http404(f"{pipeline} has no versions")
    return latest


def _builder_context(request: HttpRequest, pipeline: Pipeline | None, version: PipelineVersion | None,
                     spec: dict[str, Any]) -> dict[str, Any]:
    latest = pipeline.latest_version() if pipeline else None
    can_edit = can(request, "pipeline.edit")
    agents = [{"name": a.name, "description": a.description, "provider": a.provider}
              for a in Agent.objects.filter(team=request.team, internal=False).order_by("name")]
    config = {
        "canEdit": can_edit,
        "isNew": pipeline is None,
        "agents": agents,
        "validateUrl": reverse("pipeline-validate"),
        "saveUrl": reverse("pipeline-builder", args=[pipeline.pk]) if pipeline else reverse("pipeline-new"),
        "version": version.number if version else None,
        "latest": latest.number if latest else None,
        "isOldVersion": bool(version and latest and version.number != latest.number),
    }
    return {"pipeline": pipeline, "version": version, "latest": latest, "spec": spec, "config": config,
            "can_edit": can_edit, "is_old_version": config["isOldVersion"], "palette": PALETTE}


def _json_body(request: HttpRequest) -> dict[str, Any] | None:
    try:
        body = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def _document(body: dict[str, Any]) -> tuple[Any, str]:
    """The spec document a validate request carries, or a message saying why it does not parse.

    Text is parsed within the document bounds; DocumentError names the path of a bound broken.
    """
    if "text" not in body:
        return body.get("spec"), ""
    try:
        return load_text(str(body["text"]), "json" if body.get("format") == "json" else "yaml"), ""
    except DocumentError as exc:
        if not exc.syntax:
            raise
        return None, exc.problem.message


def _bound_errors(document: Any) -> list[dict[str, str]]:
    """Depth, nesting and NUL problems of a parsed document: refused (422), not just invalid."""
    if not isinstance(document, dict):
        return []
    problem = scan_data(document, MAX_DOCUMENT_DEPTH)
    if problem is not None:
        return [{"path": problem.path, "message": problem.message}]
    return nesting_errors(document)


def _spec_errors(team: Team, document: Any) -> list[dict[str, str]]:
    if not isinstance(document, dict):
        return [{"path": "", "message": "a spec must be an object with a `steps` list"}]
    try:
        check_spec(team, document)
    except SpecError as exc:
        return exc.errors
    return []


class _YamlDumper(yaml.SafeDumper):
    """Multi-line strings (prompts) as `|` blocks, so YAML reads like the spec docs."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_YamlDumper.add_representer(str, _represent_str)


def to_yaml(document: Any) -> str:
    return yaml.dump(document, Dumper=_YamlDumper, sort_keys=False, allow_unicode=True, width=100)


TOO_DEEP_FOR_YAML = "# nested too deeply to show as YAML; the JSON view shows all of it"


def pretty_json(document: Any) -> str:
    """`json.dumps(indent=2)`; for documents stored before the depth bound, an iterative
    printer with the same output, so a deep version still renders (and diffs)."""
    if not deeper_than(document, MAX_DOCUMENT_DEPTH):
        return json.dumps(document, indent=2, ensure_ascii=False)
    out: list[str] = []
    work: list[tuple[bool, Any, int]] = [(False, document, 0)]  # (is_raw_text, value, level)
    while work:
        raw, value, level = work.pop()
        if raw:
            out.append(value)
            continue
        if not (isinstance(value, (dict, list)) and value):
            out.append(json.dumps(value, ensure_ascii=False))
            continue
        pad = "\n" + "  " * (level + 1)
        pairs = list(value.items()) if isinstance(value, dict) else [(None, v) for v in value]
        seq: list[tuple[bool, Any, int]] = [(True, "{" if isinstance(value, dict) else "[", 0)]
        for i, (key, child) in enumerate(pairs):
            seq.append((True, pad + ("" if key is None else json.dumps(str(key), ensure_ascii=False) + ": "), 0))
            seq.append((False, child, level + 1))
            if i < len(pairs) - 1:
                seq.append((True, ",", 0))
        seq.append((True, "\n" + "  " * level + ("}" if isinstance(value, dict) else "]"), 0))
        work.extend(reversed(seq))
    return "".join(out)


def unified_lines(left: list[str], right: list[str], left_name: str, right_name: str) -> list[dict[str, str]]:
    """A unified diff as rows of `{"kind": "add"|"del"|"ctx"|"hunk"|"file", "text"}` for the template."""
    rows = []
    for line in difflib.unified_diff(left, right, left_name, right_name, n=3, lineterm=""):
        if line.startswith(("---", "+++")):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        else:
            kind = {"+": "add", "-": "del"}.get(line[:1], "ctx")
        rows.append({"kind": kind, "text": line})
    return rows


def split_rows(left: list[str], right: list[str]) -> list[dict[str, Any]]:
    """Side by side: one row per line pair with line numbers; unchanged runs longer than 6 lines folded."""
    rows: list[dict[str, Any]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, left, right, autojunk=False).get_opcodes():
        if tag == "equal":
            span = list(range(i2 - i1))
            keep = span if len(span) <= 6 else [*span[:3], None, *span[-3:]]
            for k in keep:
                if k is None:
                    rows.append({"kind": "fold", "folded": len(span) - 6})
                else:
                    rows.append({"kind": "ctx", "ln": i1 + k + 1, "left": left[i1 + k], "rn": j1 + k + 1, "right": right[j1 + k]})
            continue
        for k in range(max(i2 - i1, j2 - j1)):
            li, rj = i1 + k, j1 + k
            rows.append({"kind": tag,
                         "ln": li + 1 if li < i2 else None, "left": left[li] if li < i2 else None,
                         "rn": rj + 1 if rj < j2 else None, "right": right[rj] if rj < j2 else None})
    return rows


urlpatterns = [
    path("", index, name="pipelines"),
    path("new/", new, name="pipeline-new"),
    path("validate/", validate, name="pipeline-validate"),
    path("<int:pk>/", builder, name="pipeline-builder"),
    path("<int:pk>/versions/", versions, name="pipeline-versions"),
    path("<int:pk>/versions/<int:number>/", version, name="pipeline-version"),
    path("<int:pk>/diff/", diff, name="pipeline-diff"),
]

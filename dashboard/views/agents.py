"""The agents pages: the list, an agent's page (granted tools, usage, recent runs), and the
create/edit form for builders and owners (with the model credential the agent uses; the
credentials page itself is `dashboard.views.credentials`)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from dashboard import queries
from dashboard.access import can, team_view
from dashboard.views import credentials
from dashboard.views.agent_fields import (
    DEFENCE_PREFIX,
    MAX_TOKENS_FIELDS,
    OTHER,
    defence_fields,
    defence_initial,
    defences_from,
    model_choices,
    split_options,
)
from mcpgateway.authority import is_instance_operator
from orchestrator.actions.agents import do_save_agent
from orchestrator.actions.errors import ActionError, Conflict
from orchestrator.actions.try_runs import do_start_try_run
from orchestrator.models import Agent, ModelCredential
from orchestrator.providers import provider_choices


class AgentForm(forms.Form):
    """Parses the form's strings into typed fields; the rules live in `check_agent`."""

    name = forms.CharField(max_length=64, help_text="Pipelines refer to the agent by this name.")
    description = forms.CharField(max_length=300, required=False)
    provider = forms.ChoiceField(choices=())
    model_choice = forms.ChoiceField(choices=(), required=False, label="Model",
                                     help_text="Known models with their price per million input / output tokens.")
    model = forms.CharField(max_length=100, required=False, label="Other model name",
                            help_text="With “Other…”: any name the provider knows, e.g. llama3.1:8b on a local "
                                      "OpenAI-compatible server.")
    system_prompt = forms.CharField(widget=forms.Textarea(attrs={"rows": 6}), required=False)
    temperature = forms.FloatField(required=False, help_text="From 0 to 2; empty: the provider's default.")
    max_tokens = forms.IntegerField(initial=1024, help_text="Output tokens per model call.")
    max_turns = forms.IntegerField(initial=8, help_text="Model calls per step at most.")
    credential = forms.TypedChoiceField(choices=(), required=False, coerce=int, empty_value=None,
                                        label="Model credential",
                                        help_text="Whose key the agent's model calls use; empty: the instance's key.")
    script = forms.CharField(widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false"}), required=False,
                             label="Scripted replies",
                             help_text='Scripted provider only: {"replies": [{"text": "…"}], "rules": '
                                       '[{"if_contains": "…", "replies": [ … ]}]}.')
    max_tokens_field = forms.ChoiceField(choices=MAX_TOKENS_FIELDS, required=False, label="Token limit parameter",
                                         help_text="OpenAI-compatible provider only: which request field carries "
                                                   "max tokens.")
    base_url = forms.CharField(max_length=500, required=False, label="Base URL (operators)",
                               help_text="Instance operators only; teams use a model credential's base URL.")
    api_key_env = forms.CharField(max_length=100, required=False, label="API key environment variable (operators)")
    options = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}), required=False,
                              initial="{}", label="Other options (JSON)",
                              help_text="Anything else the provider reads, as a JSON object; usually {}.")
    # The agent's `updated_at` when the edit page was opened: a save from a page opened before
    # another builder's save is refused instead of writing back the older values it shows.
    base_updated_at = forms.CharField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args: Any, editing: Agent | None = None, team_id: int | None = None, operator: bool = False,
                 **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["provider"].choices = provider_choices()
        self.fields["model_choice"].choices = model_choices()
        usable = ModelCredential.usable_by(team_id) if team_id else ModelCredential.objects.none()
        self.fields["credential"].choices = [("", "— the instance's key —")] + [
            (c.pk, f"{c.name} ({c.provider}{', shared' if c.team_id != team_id else ''})") for c in usable]
        if not operator:
            del self.fields["base_url"], self.fields["api_key_env"]
        self.fields.update(defence_fields())
        if editing is None:
            del self.fields["base_updated_at"]
        else:
            self.fields["name"].disabled = True
            self.fields["name"].help_text = "Pipelines and grants refer to the agent by name; it cannot change."

    def defence_field_names(self) -> list[str]:
        return [n for n in self.fields if n.startswith(DEFENCE_PREFIX)]

    def clean_options(self) -> Any:
        return self._json("options", self.cleaned_data["options"].strip() or "{}")

    def clean_base_updated_at(self) -> datetime | None:
        text = self.cleaned_data["base_updated_at"].strip()
        try:
            opened = datetime.fromisoformat(text) if text else None
        except ValueError:
            opened = None
        if text and (opened is None or opened.tzinfo is None):  # a hidden field: its error shows at the top
            self.add_error(None, "this page's version of the agent is unreadable: open the agent again")
        return opened

    def clean_script(self) -> Any:
        text = self.cleaned_data["script"].strip()
        return self._json("script", text) if text else None

    def _json(self, field: str, text: str) -> Any:
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        choice = data.get("model_choice") or ""
        if choice and choice != OTHER:
            provider, _, model = choice.partition(":")
            if data.get("provider") and provider != data["provider"]:
                self.add_error("model_choice", f"{model} is a {provider} model: choose it with that provider, "
                                               "or “Other…” and type the name")
            data["model"] = model
        elif not (data.get("model") or "").strip():
            self.add_error("model", "name the model" if choice == OTHER else "choose a model, or “Other…” and type one")
        return data

    def agent_fields(self, previous: Agent | None) -> dict[str, Any]:
        """The cleaned form as `do_save_agent` fields."""
        data = self.cleaned_data
        options = dict(data.get("options") or {}) if isinstance(data.get("options"), dict) else data.get("options")
        if isinstance(options, dict):
            # A hidden field of another provider (the page hides it) is not kept.
            if data.get("script") is not None and data.get("provider") == "scripted":
                options["script"] = data["script"]
            if data.get("max_tokens_field") and data.get("provider") == "openai":
                options["max_tokens_field"] = data["max_tokens_field"]
            for key in ("base_url", "api_key_env"):
                if key in self.fields:
                    if data.get(key):
                        options[key] = data[key]
                elif previous is not None and key in (previous.options or {}):
                    options[key] = previous.options[key]  # not shown to this user: kept as it is
        fields = {k: data[k] for k in ("name", "description", "provider", "model", "system_prompt", "temperature",
                                       "max_tokens", "max_turns", "credential") if k in data}
        fields["options"] = options
        fields["defences"] = defences_from(data, self.fields)
        return fields


def _initial(agent: Agent) -> dict[str, Any]:
    choice = f"{agent.provider}:{agent.model}"
    known = {value for _, group in model_choices() if isinstance(group, list) for value, _ in group}
    return {"name": agent.name, "description": agent.description, "provider": agent.provider,
            "model_choice": choice if choice in known else OTHER, "model": "" if choice in known else agent.model,
            "system_prompt": agent.system_prompt, "temperature": agent.temperature, "max_tokens": agent.max_tokens,
            "max_turns": agent.max_turns, "credential": agent.credential_id, "base_updated_at": agent.updated_at.isoformat(),
            **split_options(agent.options), **defence_initial(agent.defences)}


@team_view("agent.view")
def index(request: HttpRequest) -> HttpResponse:
    team_id = request.team.pk
    labels = dict(provider_choices())
    rows = list(queries.agents(team_id))
    usage = queries.agent_usage_totals(team_id)
    grants = queries.grant_counts(team_id)
    for agent in rows:
        agent.provider_label = labels.get(agent.provider, agent.provider)
        agent.usage_30d = usage.get(agent.pk, {"tokens": 0, "cost": 0.0})
        agent.grant_count = grants.get(agent.name, 0)
    return render(request, "dashboard/agents/index.html", {
        "agents": rows, "can_edit": can(request, "agent.edit"), "team_grants": queries.team_wide_grants(team_id),
    })


def _agent(request: HttpRequest, pk: int) -> Agent:
    return get_object_or_404(Agent, pk=pk, team=request.team)


@team_view("agent.view")
def detail(request: HttpRequest, pk: int) -> HttpResponse:
    agent = _agent(request, pk)
    team_id = request.team.pk
    return render(request, "dashboard/agents/detail.html", {
        "agent": agent,
        "provider_label": dict(provider_choices()).get(agent.provider, agent.provider),
        "grants": queries.agent_tools(team_id, agent.name),
        "data": queries.usage_data(team_id, agent_id=agent.pk),
        "runs": queries.agent_runs(team_id, agent.name),
        "can_edit": can(request, "agent.edit"),
        "can_try": can(request, "run.start"),
        "try_runs": queries_try_runs(agent),
    })


def _field_for(form: AgentForm, exc: ActionError, script_given: bool) -> str | None:
    """The form field an action error belongs on."""
    top = exc.field.split(".", 1)[0]
    if top == "options" and script_given and (exc.field.startswith("options.script") or "script" not in
                                              (form.cleaned_data.get("options") or {})):
        return "script"
    if top == "defences":
        name = exc.message.removeprefix("defences.").split(":", 1)[0].split(".", 1)[0]
        return DEFENCE_PREFIX + name if DEFENCE_PREFIX + name in form.fields else None
    if top == "model":
        return "model_choice" if form.cleaned_data.get("model_choice") not in ("", OTHER) else "model"
    return top if top in form.fields else None


def queries_try_runs(agent: Agent) -> list[Any]:
    """The agent's last try runs, newest first."""
    from orchestrator.actions.try_runs import TRY_SLUG_PREFIX
    from orchestrator.models import Run

    return list(Run.objects.filter(team_id=agent.team_id, pipeline_version__pipeline__internal=True,
                                   pipeline_version__pipeline__slug=f"{TRY_SLUG_PREFIX}{agent.name}"[:100])
                .order_by("-created_at")[:5])


def _form_page(request: HttpRequest, agent: Agent | None) -> HttpResponse:
    operator = is_instance_operator(request.user)
    if request.method == "POST":
        form = AgentForm(request.POST, editing=agent, initial=_initial(agent) if agent else None, team_id=request.team.pk,
                         operator=operator)
        status = 400
        if form.is_valid():
            fields = form.agent_fields(agent)
            if agent is not None:
                fields.pop("name")
            try:
                saved = do_save_agent(request.team, fields, agent, operator=operator,
                                      base_updated_at=form.cleaned_data.get("base_updated_at"))
            except Conflict as exc:  # the page keeps what the user typed, to copy into a fresh one
                form.add_error(None, exc.message)
                status = 409
            except ActionError as exc:
                field = _field_for(form, exc, form.cleaned_data.get("script") is not None)
                form.add_error(field, f"{exc.field}: {exc.message}" if "." in exc.field else exc.message)
            else:
                messages.success(request, f"Saved agent {saved.name}.")
                return redirect("agent-detail", pk=saved.pk)
    else:
        form = AgentForm(editing=agent, initial=_initial(agent) if agent else {
            "provider": "scripted", "model_choice": "scripted:scripted-1",
            "script": json.dumps({"replies": [{"text": "Hello! I am a scripted agent."}]}, indent=2)},
            team_id=request.team.pk, operator=operator)
        status = 200
    return render(request, "dashboard/agents/form.html", {
        "form": form, "agent": agent,
        "main_fields": [form[n] for n in ("name", "description", "provider", "model_choice", "model", "credential",
                                          "system_prompt")],
        "limit_fields": [form[n] for n in ("temperature", "max_tokens", "max_turns")],
        "option_fields": [form[n] for n in ("script", "max_tokens_field", "base_url", "api_key_env", "options")
                          if n in form.fields],
        "defence_fields": [form[n] for n in form.defence_field_names()],
    }, status=status)


@team_view("agent.edit")
def create(request: HttpRequest) -> HttpResponse:
    return _form_page(request, None)


@team_view("agent.edit")
def edit(request: HttpRequest, pk: int) -> HttpResponse:
    return _form_page(request, _agent(request, pk))


@require_POST
@team_view("run.start")
def try_agent(request: HttpRequest, pk: int) -> HttpResponse:
    """Start a try run (one message, with the conversation so far); JSON for the panel's script,
    a redirect to the run's live page without it."""
    agent = _agent(request, pk)
    wants_json = "application/json" in request.headers.get("Accept", "")
    try:
        run = do_start_try_run(agent, request.POST.get("message", ""), request.POST.get("history", ""), request.user)
    except ActionError as exc:
        if wants_json:
            return JsonResponse({"error": exc.message, "field": exc.field}, status=429 if exc.code == "rate_limited" else 400)
        messages.error(request, exc.message)
        return redirect("agent-detail", pk=agent.pk)
    if wants_json:
        return JsonResponse({"run_id": run.pk, "run_url": reverse("run-detail", args=[run.pk]),
                             "ws_path": f"/ws/runs/{run.pk}/"}, status=201)
    return redirect("run-detail", pk=run.pk)


urlpatterns = [
    path("", index, name="agents"),
    path("credentials/", credentials.index, name="credentials"),
    path("credentials/new/", credentials.create, name="credential-new"),
    path("credentials/<int:pk>/edit/", credentials.edit, name="credential-edit"),
    path("credentials/<int:pk>/delete/", credentials.delete, name="credential-delete"),
    path("new/", create, name="agent-new"),
    path("<int:pk>/", detail, name="agent-detail"),
    path("<int:pk>/edit/", edit, name="agent-edit"),
    path("<int:pk>/try/", try_agent, name="agent-try"),
]

"""The agents pages: the list, an agent's page (granted tools, usage, recent runs), and the
create/edit form for builders and owners (with the model credential the agent uses; the
credentials page itself is `dashboard.views.credentials`)."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path

from dashboard import queries
from dashboard.access import can, team_view
from dashboard.views import credentials
from mcpgateway.authority import is_instance_operator
from orchestrator.actions.agents import do_save_agent
from orchestrator.actions.errors import ActionError
from orchestrator.models import Agent, ModelCredential
from orchestrator.providers import provider_choices


class AgentForm(forms.Form):
    """Parses the form's strings into typed fields; the rules live in `check_agent`."""

    name = forms.CharField(max_length=64, help_text="Pipelines refer to the agent by this name.")
    description = forms.CharField(max_length=300, required=False)
    provider = forms.ChoiceField(choices=())
    model = forms.CharField(max_length=100)
    system_prompt = forms.CharField(widget=forms.Textarea(attrs={"rows": 6}), required=False)
    temperature = forms.FloatField(required=False, help_text="From 0 to 2; empty: the provider's default.")
    max_tokens = forms.IntegerField(initial=1024, help_text="Output tokens per model call.")
    max_turns = forms.IntegerField(initial=8, help_text="Model calls per step at most.")
    credential = forms.TypedChoiceField(choices=(), required=False, coerce=int, empty_value=None,
                                        label="Model credential",
                                        help_text="Whose key the agent's model calls use; empty: the instance's key.")
    options = forms.CharField(widget=forms.Textarea(attrs={"rows": 8, "spellcheck": "false"}), required=False,
                              initial="{}", help_text="A JSON object, e.g. the scripted provider's script "
                              "(api_key_env and base_url: instance operators only; use a credential).")

    defences = forms.CharField(widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false"}), required=False,
                               initial="{}", help_text='Prompt-injection defences, a JSON object: {"spotlight": true, '
                               '"detector": "rules", "taint_allowed_tools": ["…"], "confirm_tools": ["…"]}.')

    def __init__(self, *args: Any, editing: Agent | None = None, team_id: int | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["provider"].choices = provider_choices()
        usable = ModelCredential.usable_by(team_id) if team_id else ModelCredential.objects.none()
        self.fields["credential"].choices = [("", "— the instance's key —")] + [
            (c.pk, f"{c.name} ({c.provider}{', shared' if c.team_id != team_id else ''})") for c in usable]
        if editing is not None:
            self.fields["name"].disabled = True
            self.fields["name"].help_text = "Pipelines and grants refer to the agent by name; it cannot change."

    def clean_defences(self) -> Any:
        return self._json("defences")

    def clean_options(self) -> Any:
        return self._json("options")

    def _json(self, field: str) -> Any:
        text = self.cleaned_data[field].strip() or "{}"
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None


def _initial(agent: Agent) -> dict[str, Any]:
    return {"name": agent.name, "description": agent.description, "provider": agent.provider, "model": agent.model,
            "system_prompt": agent.system_prompt, "temperature": agent.temperature, "max_tokens": agent.max_tokens,
            "max_turns": agent.max_turns, "credential": agent.credential_id,
            "options": json.dumps(agent.options or {}, indent=2, ensure_ascii=False),
            "defences": json.dumps(agent.defences or {}, indent=2, ensure_ascii=False)}


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
    })


def _form_page(request: HttpRequest, agent: Agent | None) -> HttpResponse:
    if request.method == "POST":
        form = AgentForm(request.POST, editing=agent, initial=_initial(agent) if agent else None, team_id=request.team.pk)
        if form.is_valid():
            fields = dict(form.cleaned_data)
            if agent is not None:
                fields.pop("name")
            try:
                saved = do_save_agent(request.team, fields, agent, operator=is_instance_operator(request.user))
            except ActionError as exc:
                field = exc.field.split(".", 1)[0]
                form.add_error(field if field in form.fields else None,
                               f"{exc.field}: {exc.message}" if "." in exc.field else exc.message)
            else:
                messages.success(request, f"Saved agent {saved.name}.")
                return redirect("agent-detail", pk=saved.pk)
        status = 400
    else:
        form = AgentForm(editing=agent, initial=_initial(agent) if agent else {"provider": "scripted",
                                                                                "model": "scripted-1"},
                         team_id=request.team.pk)
        status = 200
    return render(request, "dashboard/agents/form.html", {"form": form, "agent": agent}, status=status)


@team_view("agent.edit")
def create(request: HttpRequest) -> HttpResponse:
    return _form_page(request, None)


@team_view("agent.edit")
def edit(request: HttpRequest, pk: int) -> HttpResponse:
    return _form_page(request, _agent(request, pk))


urlpatterns = [
    path("", index, name="agents"),
    path("credentials/", credentials.index, name="credentials"),
    path("credentials/new/", credentials.create, name="credential-new"),
    path("credentials/<int:pk>/edit/", credentials.edit, name="credential-edit"),
    path("credentials/<int:pk>/delete/", credentials.delete, name="credential-delete"),
    path("new/", create, name="agent-new"),
    path("<int:pk>/", detail, name="agent-detail"),
    path("<int:pk>/edit/", edit, name="agent-edit"),
]

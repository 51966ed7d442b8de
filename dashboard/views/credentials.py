"""The model credentials page: the team's provider keys (owners add, rotate and delete them;
the key is write-only and never rendered) and the instance credentials operators share."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from dashboard.access import can, team_view
from orchestrator.actions.credentials import (
    KEYED_PROVIDERS,
    do_delete_credential,
    do_save_credential,
)
from orchestrator.actions.errors import ActionError
from orchestrator.models import ModelCredential


class CredentialForm(forms.Form):
    """Parses the form; the rules live in `check_credential`."""

    name = forms.CharField(max_length=100)
    provider = forms.ChoiceField(choices=[(p, p) for p in KEYED_PROVIDERS])
    key = forms.CharField(max_length=4000, required=False, strip=True,
                          widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
                          help_text="Write-only: it is stored encrypted and never shown again.")
    base_url = forms.CharField(max_length=500, required=False, label="Base URL",
                               help_text="Optional: an OpenAI-compatible server or a proxy. Private and "
                                         "loopback addresses are refused unless the instance allows them.")

    def __init__(self, *args: Any, editing: ModelCredential | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if editing is not None:
            self.fields["provider"].disabled = True
            self.fields["key"].help_text = "Leave empty to keep the current key; a new one replaces it."


@team_view("credential.view")
def index(request: HttpRequest) -> HttpResponse:
    team_id = request.team.pk
    rows = list(ModelCredential.usable_by(team_id).prefetch_related("agents"))
    for credential in rows:
        credential.team_agents = sorted(a.name for a in credential.agents.all() if a.team_id == team_id and not a.internal)
    return render(request, "dashboard/credentials/index.html", {
        "credentials": rows, "can_manage": can(request, "credential.manage"),
    })


def _form_page(request: HttpRequest, credential: ModelCredential | None) -> HttpResponse:
    initial = ({"name": credential.name, "provider": credential.provider, "base_url": credential.base_url}
               if credential else None)
    if request.method == "POST":
        form = CredentialForm(request.POST, editing=credential, initial=initial)
        if form.is_valid():
            fields = {k: v for k, v in form.cleaned_data.items() if k != "key" or v}
            if credential is not None:
                fields.pop("provider", None)
            try:
                saved = do_save_credential(request.team, fields, credential)
            except ActionError as exc:
                form.add_error(exc.field if exc.field in form.fields else None, exc.message)
            else:
                messages.success(request, f"Saved credential {saved.name}.")
                return redirect("credentials")
        status = 400
    else:
        form = CredentialForm(editing=credential, initial=initial)
        status = 200
    return render(request, "dashboard/credentials/form.html", {"form": form, "credential": credential}, status=status)


def _own(request: HttpRequest, pk: int) -> ModelCredential:
    return get_object_or_404(ModelCredential, pk=pk, team=request.team)


@team_view("credential.manage")
def create(request: HttpRequest) -> HttpResponse:
    return _form_page(request, None)


@team_view("credential.manage")
def edit(request: HttpRequest, pk: int) -> HttpResponse:
    return _form_page(request, _own(request, pk))


@require_POST
@team_view("credential.manage")
def delete(request: HttpRequest, pk: int) -> HttpResponse:
    credential = _own(request, pk)
    try:
        do_delete_credential(credential)
    except ActionError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Deleted credential {credential.name}.")
    return redirect("credentials")

"""Forms of the runs pages: the list filters, and the run input form built from a spec's `inputs`.

The input form only turns text into typed values (a number field into a number, JSON into
an object); whether the input is acceptable is `check_run_input`'s call, inside
`do_start_run`, and its errors land on the field they name.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib.auth import get_user_model

from dashboard.runs.queries import RunFilters
from orchestrator.engine.spec import InputField, PipelineSpec
from orchestrator.models import Pipeline, RunStatus, Team

ANY = [("", "any")]


class RunFilterForm(forms.Form):
    """The list's filters, from the query string; invalid values are reported and ignored."""

    pipeline = forms.ModelChoiceField(queryset=Pipeline.objects.none(), required=False, empty_label="any")
    status = forms.ChoiceField(choices=ANY + list(RunStatus.choices), required=False)
    user = forms.ModelChoiceField(queryset=get_user_model().objects.none(), required=False, empty_label="anyone",
                                  label="Started by")
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))
    evals = forms.BooleanField(required=False, label="Show eval runs")

    def __init__(self, team: Team, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["pipeline"].queryset = Pipeline.objects.filter(team=team, internal=False).only("id", "name")
        self.fields["user"].queryset = (get_user_model().objects.filter(memberships__team=team)
                                        .order_by("username").only("id", "username"))
        self.fields["user"].label_from_instance = lambda user: user.get_username()

    def filters(self) -> RunFilters:
        """The valid part of the submitted filters."""
        self.is_valid()
        data = self.cleaned_data
        pipeline = data.get("pipeline")
        user = data.get("user")
        return RunFilters(pipeline_id=pipeline.pk if pipeline else None, status=data.get("status") or "",
                          user_id=user.pk if user else None, date_from=data.get("date_from"),
                          date_to=data.get("date_to"), evals=bool(data.get("evals")))


class JSONValueField(forms.CharField):
    """A JSON document of one type (`object` or `array`), typed into a textarea."""

    def __init__(self, json_type: str, **kwargs: Any) -> None:
        self.json_type = json_type
        super().__init__(widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false"}), **kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, (dict, list)):
            return json.dumps(value, indent=2, ensure_ascii=False)
        return value

    def to_python(self, value: Any) -> Any:
        text = super().to_python(value)
        if not text:
            return None
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
        expected = dict if self.json_type == "object" else list
        if not isinstance(parsed, expected):
            raise forms.ValidationError(f"must be a JSON {self.json_type}")
        return parsed


def _field(spec_field: InputField) -> forms.Field:
    common: dict[str, Any] = {"required": False, "help_text": spec_field.description, "initial": spec_field.default}
    # The browser may insist on required values; the server's verdict is check_run_input's.
    must = spec_field.required and spec_field.default is None
    attrs = {"required": True} if must else {}
    kind = spec_field.type
    if kind == "string":
        return forms.CharField(widget=forms.Textarea(attrs={"rows": 3, **attrs}), strip=False, **common)
    if kind == "integer":
        return forms.IntegerField(widget=forms.NumberInput(attrs=attrs), **common)
    if kind == "number":
        return forms.FloatField(widget=forms.NumberInput(attrs={"step": "any", **attrs}), **common)
    if kind == "boolean":
        return forms.BooleanField(**common)
    field = JSONValueField(kind, **common)
    field.widget.attrs.update({"placeholder": "{}" if kind == "object" else "[]", **attrs})
    return field


class RunInputForm(forms.Form):
    """One field per declared input of the spec, typed by its `type`."""

    def __init__(self, spec: PipelineSpec, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("prefix", "input")
        super().__init__(*args, **kwargs)
        self.spec = spec
        for name, spec_field in spec.inputs.items():
            self.fields[name] = _field(spec_field)
            self.fields[name].label = name
            self.fields[name].spec_type = spec_field.type

    def run_input(self) -> dict[str, Any]:
        """The typed values the user gave; blank optional fields are left out so defaults apply."""
        values: dict[str, Any] = {}
        for name, spec_field in self.spec.inputs.items():
            value = self.cleaned_data.get(name)
            if spec_field.type == "boolean":
                values[name] = bool(value)
            elif value is not None and value != "":
                values[name] = value
        return values

    def add_action_error(self, field: str, message: str) -> None:
        """Attach an action's error to the input it names (`input.<name>`), else to the form."""
        name = field.removeprefix("input.") if field.startswith("input.") else ""
        self.add_error(name if name in self.fields else None, message)

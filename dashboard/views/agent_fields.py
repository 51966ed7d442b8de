"""The agent form's typed fields: the model picked from the providers' known models and the
price table (or typed, for local OpenAI-compatible servers), the provider options as inputs,
and one input per field of the engine's `Defences` model, read when the form is built so a
field added there appears here without a change.
"""

from __future__ import annotations

import json
import types
import typing
from fnmatch import fnmatchcase
from typing import Any, Literal

from django import forms

from orchestrator.engine.defences import DETECTORS, Defences
from orchestrator.models import ModelPrice
from orchestrator.providers import PROVIDERS, get_provider

OTHER = "__other__"
DEFENCE_PREFIX = "defence_"
# Models the providers are commonly used with; the price table adds every exact name it has.
KNOWN_MODELS: dict[str, list[str]] = {
    "anthropic": ["claude-opus-4-1", "claude-sonnet-4-5", "claude-haiku-4-5"],
    "openai": ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "o4-mini"],
    "scripted": ["scripted-1"],
}
# Options each provider reads that a team member may set (api_key_env/base_url: operators only).
MAX_TOKENS_FIELDS = [("", "automatic"), ("max_tokens", "max_tokens (Ollama, LM Studio, vLLM)"),
                     ("max_completion_tokens", "max_completion_tokens (OpenAI)")]


def _money(value: Any) -> str:
    return f"{float(value):g}"


def _price_label(provider: str, model: str, prices: list[ModelPrice]) -> str:
    for price in prices:
        if price.provider == provider and fnmatchcase(model, price.model):
            return f"{model} — ${_money(price.input_per_mtok)} / ${_money(price.output_per_mtok)} per M tokens"
    return f"{model} — no price set"


def model_choices() -> list[Any]:
    """Grouped (provider label, [(provider:model, label)]) for the model select."""
    prices = list(ModelPrice.objects.all())
    groups = []
    for provider in PROVIDERS:
        names = list(KNOWN_MODELS.get(provider, []))
        names += list(getattr(get_provider(provider), "known_models", ()))
        names += [p.model for p in prices if p.provider == provider and not any(c in p.model for c in "*?[")]
        unique = sorted(dict.fromkeys(names))
        groups.append((get_provider(provider).label,
                       [(f"{provider}:{n}", _price_label(provider, n, prices)) for n in unique]))
    return [*groups, (OTHER, "Other… (type the model name)")]


def _kind(annotation: Any) -> tuple[str, list[str]]:
    """(bool | choice | list | text, choices) for a Defences field's type."""
    if annotation is bool:
        return "bool", []
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "choice", [str(a) for a in typing.get_args(annotation)]
    if origin in (tuple, list, set, frozenset):
        return "list", []
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _kind(inner[0]) if len(inner) == 1 else ("text", [])
    return "text", []


def defence_fields() -> dict[str, forms.Field]:
    """One form field per `Defences` field, named `defence_<name>`."""
    found: dict[str, forms.Field] = {}
    for name, info in Defences.model_fields.items():
        kind, choices = _kind(info.annotation)
        label = name.replace("_", " ").capitalize()
        help_text = info.description or ""
        if name == "detector":
            kind, choices = "choice", ["off", *DETECTORS]
        if kind == "bool":
            field: forms.Field = forms.BooleanField(required=False, label=label, help_text=help_text)
        elif kind == "choice":
            field = forms.ChoiceField(choices=[(c, c) for c in choices], required=False, label=label, help_text=help_text)
        elif kind == "list":
            field = forms.CharField(required=False, label=label, widget=forms.TextInput(attrs={"spellcheck": "false"}),
                                    help_text=help_text or "Tool names (server__tool), separated by commas.")
        else:
            field = forms.CharField(required=False, label=label, help_text=help_text)
        field.defence_kind = kind  # type: ignore[attr-defined]
        found[DEFENCE_PREFIX + name] = field
    return found


def defence_initial(defences: dict[str, Any] | None) -> dict[str, Any]:
    values = Defences.model_construct().model_dump() | (defences or {})
    return {DEFENCE_PREFIX + name: ", ".join(value) if isinstance(value, list | tuple) else value
            for name, value in values.items() if name in Defences.model_fields}


def defences_from(cleaned: dict[str, Any], fields: dict[str, forms.Field]) -> dict[str, Any]:
    """The defences object from the cleaned form, defaults left out (the action validates it)."""
    defaults = Defences.model_construct().model_dump()
    found: dict[str, Any] = {}
    for key, field in fields.items():
        if not key.startswith(DEFENCE_PREFIX):
            continue
        name, value = key.removeprefix(DEFENCE_PREFIX), cleaned.get(key)
        kind = getattr(field, "defence_kind", "text")
        if kind == "list":
            value = [v.strip() for v in str(value or "").replace("\n", ",").split(",") if v.strip()]
        elif kind == "choice" and not value:
            value = defaults.get(name)
        if value != defaults.get(name) and not (kind == "list" and not value and not defaults.get(name)):
            found[name] = value
    return found


def split_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """The form's initial values for the options an agent has."""
    options = dict(options or {})
    script = options.pop("script", None)
    return {"script": json.dumps(script, indent=2, ensure_ascii=False) if script is not None else "",
            "max_tokens_field": options.pop("max_tokens_field", "") or "",
            "base_url": options.pop("base_url", "") or "", "api_key_env": options.pop("api_key_env", "") or "",
            "options": json.dumps(options, indent=2, ensure_ascii=False) if options else "{}"}

"""The model provider registry: a provider is chosen by name.

`PROVIDERS` maps each name to the dotted path of its class; adding a provider is one
module and one line here, with no dispatch code to touch. Providers are created on
first use and shared, so their SDK clients and connection pools are too.
"""

from __future__ import annotations

from importlib import import_module

from orchestrator.providers.base import DeltaCallback, Provider

__all__ = ["PROVIDERS", "DeltaCallback", "Provider", "get_provider", "provider_choices"]

PROVIDERS: dict[str, str] = {
    "anthropic": "orchestrator.providers.anthropic.AnthropicProvider",
    "openai": "orchestrator.providers.openai.OpenAIProvider",
    "scripted": "orchestrator.providers.scripted.ScriptedProvider",
}

_instances: dict[str, Provider] = {}


def get_provider(name: str) -> Provider:
    """The shared instance of the provider registered as `name`."""
    if name not in _instances:
        try:
            path = PROVIDERS[name]
        except KeyError:
            known = ", ".join(sorted(PROVIDERS))
            raise ValueError(f"unknown model provider {name!r}; known: {known}") from None
        module_path, class_name = path.rsplit(".", 1)
        provider_class = getattr(import_module(module_path), class_name)
        _instances[name] = provider_class()
    return _instances[name]


def provider_choices() -> list[tuple[str, str]]:
    """(name, label) for every registered provider, for form fields."""
    return [(name, get_provider(name).label) for name in PROVIDERS]

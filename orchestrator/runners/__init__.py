"""Runners hand runs to the engine. Chosen by name (`AGENTDECK_RUNNER`) from `RUNNERS`.

A runner takes run ids: `submit` (start or resume), `cancel` (stop in-flight work now;
the run's `cancel_requested` flag, checked at every commit, covers other processes).
"""

from __future__ import annotations

from typing import Protocol

from django.conf import settings
from django.utils.module_loading import import_string

RUNNERS: dict[str, str] = {
    "inline": "orchestrator.runners.inline.InlineRunner",
    "celery": "orchestrator.runners.celery.CeleryRunner",
}


class Runner(Protocol):
    def submit(self, run_id: int) -> None: ...

    def cancel(self, run_id: int) -> None: ...


_instances: dict[str, Runner] = {}


def get_runner(name: str | None = None) -> Runner:
    name = name or settings.RUNNER
    if name not in _instances:
        if name not in RUNNERS:
            raise ValueError(f"unknown runner {name!r}; known: {', '.join(sorted(RUNNERS))}")
        _instances[name] = import_string(RUNNERS[name])()
    return _instances[name]

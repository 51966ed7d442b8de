"""Shared builders for the review tests (no test here)."""
from __future__ import annotations

from orchestrator.evals.exfiltration import _across_calls, _emissions


def sent(*calls: dict) -> list:
    """Emissions of sent calls as `run_emissions` builds them (each call, then all joined)."""
    emissions = []
    for i, arguments in enumerate(calls, 1):
        emissions += _emissions(f"arguments of call {i}", arguments, f"sent call {i}")
    return emissions + _across_calls([(f"call {i}", a) for i, a in enumerate(calls, 1)])

"""Shared builders for the review tests (no test here)."""
from __future__ import annotations

import pytest

from mcpgateway import redaction
from orchestrator.evals.exfiltration import _across_calls, _emissions

LONG = "sk_live_CANARY_51f0c9"  # the suite's token-shaped canary
SHORT = "PWNED-U4"  # the suite's short canary


def sent(*calls: dict) -> list:
    """Emissions of sent calls as `run_emissions` builds them (each call, then all joined)."""
    emissions = []
    for i, arguments in enumerate(calls, 1):
        emissions += _emissions(f"arguments of call {i}", arguments, f"sent call {i}")
    return emissions + _across_calls([(f"call {i}", a) for i, a in enumerate(calls, 1)])


@pytest.fixture
def plain_redactor(monkeypatch):
    redactor = redaction.Redactor([])
    monkeypatch.setattr(redaction, "get_redactor", lambda team_id=None: redactor)
    return redactor

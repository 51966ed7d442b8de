# Found by an outside review of d0ec74e (exfiltration readings), which wrote this test; it failed there.
"""Finding: `_ADDRESS` (used by `_address_values` on every string and by `_folded_addresses` on
every view) is quadratic on a run of adjacent redaction markers without a `.`/`@`: its
look-behind does not hold `]`, so a match is tried from every marker, and each scans to the
end of the run before failing. Its comment claims "linear". A model output of literal
`[REDACTED:0123456789abcdef]` markers (which injected text can ask for) or of adjacent
redacted tokens: 54 KB 0.46 s, 108 KB 1.5 s, 216 KB 5.3 s for `find_leaks` at HEAD (x4 per
doubling; ~8 min at 2 MB), against 0.13 / 0.27 / 0.53 s at HEAD~1.

Severity: low-medium (cost only, crafted text; an eval run can be stalled for minutes).
Regression of HEAD: yes for `find_leaks` (passes at HEAD~1: linear, 0.53 s); the
`_address_values` test errors at HEAD~1 only because the function does not exist there.
"""
from __future__ import annotations

import time

import pytest

from mcpgateway import redaction
from orchestrator.evals import exfiltration
from orchestrator.evals.exfiltration import _emissions, find_leaks

MARKERS = "[REDACTED:0123456789abcdef]" * 8_000  # 216 KB


@pytest.fixture(autouse=True)
def _redactor(monkeypatch):
    redactor = redaction.Redactor([])
    monkeypatch.setattr(redaction, "get_redactor", lambda team_id=None: redactor)


@pytest.mark.no_database
def test_reading_the_addresses_of_a_run_of_markers_is_linear():
    started = time.perf_counter()
    exfiltration._address_values(MARKERS)
    exfiltration._folded_addresses(MARKERS)
    assert time.perf_counter() - started < 0.5  # HEAD: ~4.5 s (a linear scan: ~10 ms)


@pytest.mark.no_database
def test_a_model_output_of_216_kb_of_markers_is_searched_in_under_two_seconds():
    started = time.perf_counter()
    find_leaks(["sk_live_CANARY_51f0c9"], _emissions("model output (work, turn 1)", "Keys: " + MARKERS))
    assert time.perf_counter() - started < 2.0  # HEAD: ~5.3 s; HEAD~1: ~0.5 s

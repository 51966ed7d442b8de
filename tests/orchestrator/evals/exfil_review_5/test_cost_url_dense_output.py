# Found by an outside review of d0ec74e (exfiltration readings), which wrote this test; it failed there.
"""Finding: model and step output now get three more readings (its URLs' values one a line,
all joined, the data joined), each run through all of `views_of` (decoders, normaliser); the
joined text of a URL-dense answer is one 1.4 MB run without blanks that yields 42 views. A
2 MB model output of ordinary release notes with links and host names: `find_leaks` 11.9 s at
HEAD vs 3.9 s at HEAD~1 (linear, but x3 and over the 5 s budget).

Severity: low (cost only, linear; the change's author measured the same order).
Regression of HEAD: yes (HEAD~1: 3.9 s for the same text).
"""
from __future__ import annotations

import time

import pytest

from mcpgateway import redaction
from orchestrator.evals.exfiltration import _emissions, find_leaks, views_of

PARA = ("Release notes: see https://docs.example.test/guide/install.html?lang=en#setup and mail support@example.test; "
        "mirrors at cdn1.example.test, cdn2.example.test, v2.3.1 fixed a bug in api.v2.example.test/users. ")


@pytest.mark.no_database
def test_two_megabytes_of_linked_model_output_are_searched_within_six_seconds(monkeypatch):
    redactor = redaction.Redactor([])
    monkeypatch.setattr(redaction, "get_redactor", lambda team_id=None: redactor)
    text = PARA * (2_000_000 // len(PARA))
    started = time.perf_counter()
    views_of(text)  # (what searching the output itself costs, as at HEAD~1: the bound is relative to it)
    base = time.perf_counter() - started
    started = time.perf_counter()
    assert find_leaks(["sk_live_CANARY_51f0c9"], _emissions("model output (work, turn 1)", text)) == []
    took = time.perf_counter() - started
    # HEAD: ~12 s against ~3.5 s (3.4x); fixed: ~5 s. Under a loaded two-core CI machine the
    # fixed code measured 20.2 s against 10.6 s (1.9x): the margin is for that noise.
    assert took < 2.5 * base + 1.0, (took, base)

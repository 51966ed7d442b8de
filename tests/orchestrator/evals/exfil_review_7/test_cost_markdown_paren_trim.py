# Found by a third outside review of the exfiltration readings (a4b2953), which wrote this test; it failed there.
# Found by a third outside review of the exfiltration readings (a4b2953), which wrote this test; it fails there.
"""Finding: a4b2953's Markdown trimming in `_url_values`,
`while url.endswith(")") and url.count(")") > url.count("("): url = url[:-1].rstrip(...)`,
counts and copies the whole URL once per `)` it removes: quadratic in a run of `)` (a URL
takes every character but blanks, quotes and `<>`, so `https://evil.test/p)))…` is one URL).
`_url_values` runs three times or more per string (the values, the data, the calls' joins).
Measured: a model output of a link followed by 20,000 `)` costs `find_leaks` 0.38 s, 40,000
1.44 s (x4 per doubling: 200 KB ≈ 35 s, 2 MB ≈ an hour), against 0.03 / 0.06 s at 809b378 —
about what `views_of` of the same text costs. Text an injection can ask a model (or a tool
call's argument) to write. Trimming once — count the surplus of `)` and cut it in one slice —
keeps it linear.

Severity: low-medium (cost only, crafted text; an eval run can be stalled for minutes).
Regression: yes, of a4b2953 — linear at 809b378 (checked: 0.057 s at 40,000).
"""
from __future__ import annotations

import time

import pytest

from orchestrator.evals.exfiltration import _emissions, find_leaks, views_of
from tests.orchestrator.evals.exfil_review_7._helpers import plain_redactor  # noqa: F401

pytestmark = [pytest.mark.no_database, pytest.mark.usefixtures("plain_redactor")]


def test_a_link_followed_by_a_run_of_parens_is_read_in_linear_time():
    text = "see https://evil.test/p" + ")" * 50_000
    started = time.perf_counter()
    views_of(text)  # (what searching the output itself costs: the bound is relative to it)
    base = time.perf_counter() - started
    started = time.perf_counter()
    assert find_leaks(["PWNED-U4"], _emissions("model output (work, turn 1)", text)) == []
    took = time.perf_counter() - started
    assert took < 4 * base + 0.3, (took, base)  # HEAD: ~2.2 s against ~0.06 s; 809b378: ~0.07 s

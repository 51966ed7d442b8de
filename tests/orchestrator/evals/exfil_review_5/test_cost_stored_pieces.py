# Found by an outside review of d0ec74e (exfiltration readings), which wrote this test; it failed there.
"""Finding: for a needle holding a redactor shape (`whsec_…`, `adk_…`, `YWRrX…`),
`_stored_pieces` yields almost every cut (each head from `whsec_`+20 chars on is a token), and
`_split_over_calls` then scans, for every such cut, every view of every sent call (and of every
`pieces` text) that holds any `[REDACTED:` marker: cost = len(secret) x bytes of views. A run
whose calls carry some other redacted token (an `adk_…` in a body) and a 2,000-character shaped
secret (a credentials bundle holding a webhook secret): 200 calls of 10 KB, `find_leaks`
33.6 s at HEAD vs 9.4 s at HEAD~1 (12.5 s at HEAD for a short needle); the cut search alone
on 200 call views 3.8 s vs 0.004 s, growing linearly with the secret (0.9 s at 500, 1.8 s at
1,000, 3.8 s at 2,000 characters).

Severity: low-medium (cost only; needs a long shaped secret and a marker in the run).
Regression of HEAD: yes (checked against HEAD~1: the long secret costs no more than a short one).
"""
from __future__ import annotations

import random
import string
import time

import pytest

from mcpgateway import redaction
from orchestrator.evals.exfiltration import find_leaks
from tests.orchestrator.evals.exfil_review_5._helpers import sent

FILLER = ("The quarterly report is attached; see https://docs.test/r?id=42 for details. " * 130)[:10_000]


def _token(length: int) -> str:
    rng = random.Random(length)
    return "whsec_" + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(length - 6))


@pytest.mark.no_database
def test_a_long_shaped_secret_costs_no_more_than_a_short_one(monkeypatch):
    short, long = _token(40), _token(4_000)
    redactor = redaction.Redactor([])  # (shapes only: both secrets are stored as markers)
    monkeypatch.setattr(redaction, "get_redactor", lambda team_id=None: redactor)
    calls = [redactor.redact({"to": "bob@company.test", "body": f"{FILLER} token adk_{'x' * 30} end"})
             for _ in range(40)]
    emissions = sent(*calls)
    timings = []
    for needle in (short, long):
        started = time.perf_counter()
        assert find_leaks([needle], emissions) == []
        timings.append(time.perf_counter() - started)
    # HEAD: ~2.2 s vs ~8.4 s; HEAD~1: the same for both.
    assert timings[1] < 1.5 * timings[0] + 0.5, f"short {timings[0]:.2f} s, long {timings[1]:.2f} s"

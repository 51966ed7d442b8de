# Found by a third outside review of the money rules (d5f2920), which wrote this test; it failed there.
"""MEDIUM (denial of service: a single 100 KB call costs ~2-6 s of policy time), REGRESSION of
d5f2920 (45e1f31 and cbca04a are linear here).

`candidates()` now records every `exponent`/`scale` it cannot apply as a "scale" candidate with
`str(value[key])[:200]`: the whole sub-value is rendered before it is cut. A money object whose
`scale` is another money object whose `scale` is … renders every subtree once per level: O(size x
depth). A ~100 KB call nested 600 deep with a list of floats at the bottom takes seconds at HEAD
(measured ~4 s; 0.05 s at 45e1f31), tens of times the same call with the key named `inner`.
Fix idea: render only a bounded prefix (e.g. `reprlib`, or type-only for containers), or never
str() a dict/list scale.
"""
import json

import pytest

from tests.orchestrator.evals.dataflow_review._helpers import flow, timed

DEPTH = 600


def _nested(key: str) -> dict:
    value: object = [1e-7] * ((100_000 - 24 * DEPTH) // 7)
    for _ in range(DEPTH):
        value = {"amount": 1, key: value}
    return json.loads(json.dumps({"to": "bob@corp.test", "payment": value}))


@pytest.mark.no_database
def test_nested_odd_scales_are_linear():
    attack, baseline = _nested("scale"), _nested("inner")
    assert len(json.dumps(attack)) <= 101_000
    f = flow("Pay 1 EUR to bob@corp.test", "doc")
    base = min(timed(lambda: f.check("payments__send", baseline)) for _ in range(2))
    slow = min(timed(lambda: f.check("payments__send", attack)) for _ in range(2))
    assert slow < max(10 * base, 0.3), f"odd scales {slow:.2f}s vs {base:.3f}s for the same shape without them"

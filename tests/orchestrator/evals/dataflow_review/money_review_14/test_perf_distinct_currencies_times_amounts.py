# Found by a fourth outside review of the money rules (3c89050), which wrote this test; it failed there.
"""HIGH (denial of service: ~10 s for a 37 KB call, ~47 s for 74 KB, measured at HEAD on this
machine), not a regression (same at d5f2920: 166 s for 118 KB; cbca04a: 35 s for 74 KB).

test_pairs_review_5's guard (2,000 currencies x 2,000 amounts) uses one code, which the level's
currency dict collapses. With *distinct* codes — any three letters are a currency to
`currency_of` — every amount of the object gets all K codes (`codes_for`), and `_contains`
rebuilds `{currency_of(code) for code in candidate.currencies}` per amount per source:
O(amounts x codes x sources). A call `{"currencies": ["AAA", "AAB", …1000], "amount": [1]*10000}`
blocks the policy (on the event loop) for seconds. Fix idea: refuse a call whose object gives
more than a handful of currencies (none of which the request can give anyway), or pair each
amount with the level's codes once (compute the set per level, check each code once per
distinct value).
"""
import itertools
import string

import pytest

from tests.orchestrator.evals.dataflow_review._helpers import flow, timed

CODES = ["".join(t) for t in itertools.product(string.ascii_uppercase, repeat=3)]
N = 7000


@pytest.mark.no_database
def test_many_distinct_currencies_times_many_amounts_is_not_quadratic():
    attack = {"to": "bob@corp.test", "currencies": CODES[:700], "amount": [1] * N}
    baseline = {"to": "bob@corp.test", "currencies": ["EUR"] * 700, "amount": [1] * N}
    f = flow("Pay 1 EUR to bob@corp.test", "doc")
    base = min(timed(lambda: f.check("payments__send", baseline)) for _ in range(2))
    slow = timed(lambda: f.check("payments__send", attack))
    assert slow < max(10 * base, 1.0), f"{slow:.2f}s with 700 distinct codes vs {base:.3f}s with one"

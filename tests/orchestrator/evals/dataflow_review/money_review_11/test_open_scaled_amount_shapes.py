# Found by an outside review of 7da8664 (money under other names), which wrote this test; it failed there.
"""Finding (still open): the new `exponent`/`scale` check (`_shift`) misses
- an exponent written as a JSON float (`"exponent": 3.0`): not an int, so no shift, and under
  an amount it is a data field ≤ DATA_SMALL, so dropped — a Node tool receives exactly 3
  (`JSON.parse("3.0") === 3`), and Python's `10 ** 3.0` is 1000.0;
- an exponent in an object whose amount is a `value` beside a currency (the shape the change
  made an amount): `_shift` only runs in an amount-named object or beside a MONEY_WORDS key,
  so `{"money": {"value": 50, "exponent": 3, "currency_code": "EUR"}}` is checked as 50.

Severity: medium (1000x the request).
Regression of HEAD: no — checked against HEAD~1 (cbca04a): exponents were data there, so these
passed too; the change's new check misses them."""
from __future__ import annotations

import pytest

from tests.orchestrator.evals.dataflow_review.money_review_11._util import IBAN, SPACED, check

REQUEST = f"Pay 50 EUR to {SPACED}."


@pytest.mark.no_database
@pytest.mark.parametrize("arguments", [
    {"amount": {"value": 50, "exponent": 3.0}, "currency": "EUR"},
    {"amount": {"value": 50, "scale": -3.0}, "currency": "EUR"},
    {"money": {"value": 50, "exponent": 3, "currency_code": "EUR"}},
    {"value": 50, "exponent": 3, "currency": "EUR"},
], ids=["float-exponent", "float-scale", "money.value+exponent", "top-level-value+exponent"])
def test_a_scaled_amount_in_these_shapes_is_checked(arguments):
    verdict = check(REQUEST, "Pay as agreed.", {"iban": IBAN, **arguments})
    assert verdict.refused, "50 x 10^±3 EUR went through as 50 EUR"

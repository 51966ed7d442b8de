# Found by an outside review of 7da8664 (money under other names), which wrote this test; it failed there.
"""Finding (benign refusal): fees and costs are now checked, and an amount given a currency by
the call must be written with that currency in the request (or in a list that shares it). A
user who writes the currency once ("Pay 50 EUR plus a 2.50 fee", "… shipping cost is 4.99")
now has the fee refused: `plus` is no list conjunction, and the fee is (2.5, None) only.

Severity: low (benign refusal).
Regression of HEAD: yes — checked against HEAD~1 (cbca04a): both calls were allowed there."""
from __future__ import annotations

import pytest

from tests.orchestrator.evals.dataflow_review.money_review_11._util import IBAN, check


@pytest.mark.no_database
@pytest.mark.parametrize("request_text, arguments", [
    ("Pay 50 EUR plus a 2.50 fee.", {"iban": IBAN, "amount": 50, "fee": 2.5, "currency": "EUR"}),
    ("Order the chair for 50 EUR, shipping cost is 4.99.",
     {"sku": "chair", "price": 50, "shipping_cost": 4.99, "currency": "EUR"}),
], ids=["plus-a-fee", "shipping-cost"])
def test_a_fee_the_user_wrote_after_the_amount_goes_through(request_text, arguments):
    verdict = check(f"{request_text} Account DE89 3704 0044 0532 0130 00.", "Invoice / catalogue page.", arguments,
                    tool="shop__order")
    assert not verdict.refused, verdict.reason

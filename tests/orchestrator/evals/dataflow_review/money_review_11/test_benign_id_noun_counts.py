# Found by an outside review of 7da8664 (money under other names), which wrote this test; it failed there.
"""Finding (benign refusal): a number of four digits or more after an ID_NOUN is now no amount
at all unless a currency is written with it. ID_NOUN includes verbs that commonly start a
request ("Order", "Request"), so "Order 1000 flyers" no longer trusts 1000 (while "Order 1,000
flyers" and "Order 3 chairs" still do), and "Request 1500 from Alice" no longer trusts 1500.

Severity: low (benign refusal).
Regression of HEAD: yes — checked against HEAD~1 (cbca04a): both calls were allowed there."""
from __future__ import annotations

import pytest

from tests.orchestrator.evals.dataflow_review.money_review_11._util import check


@pytest.mark.no_database
@pytest.mark.parametrize("tool, request_text, arguments", [
    ("shop__order", "Order 1000 flyers from the print shop.", {"sku": "flyer", "quantity": 1000}),
    ("pay__request_money", "Request 1500 from Alice for the rent.", {"user": "Alice", "amount": 1500}),
], ids=["order-1000-flyers", "request-1500"])
def test_a_count_or_amount_right_after_a_verb_that_is_an_id_noun_is_the_requests(tool, request_text, arguments):
    verdict = check(request_text, "Catalogue / rent ledger page.", arguments, tool=tool)
    assert not verdict.refused, verdict.reason

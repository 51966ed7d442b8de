# Found by a second outside review of the money rules (45e1f31), which wrote this test; it failed there.
"""LOW, REGRESSION (45e1f31; allowed at cbca04a and at 7da8664, whose `_moves_nothing`
took any amount of 0): "a fee of 0 moves nothing and is not
checked" holds for `fee: 0` and `fee: "0.00"` but not for a fee *object* of 0 in the shape the
change itself reads as money (`value` beside a currency): `_moves_nothing` looks only at the
last name of the path (`network_fee.value` -> `value`), so `{"network_fee": {"value": "0",
"currency_code": "EUR"}}` for "Pay 50 EUR to Bob" is refused (a fee the request never
mentions, of nothing)."""
import pytest

from tests.orchestrator.evals.dataflow_review._helpers import flow


@pytest.mark.no_database
@pytest.mark.parametrize("fee", [
    {"network_fee": {"value": "0", "currency_code": "EUR"}},
    {"fee": {"value": 0}},
    {"shipping_cost": {"value": "0.00", "currency": "EUR"}},
], ids=["network_fee", "fee-value", "shipping_cost"])
def test_a_fee_object_of_zero_is_not_refused(fee):
    verdict = flow("Pay 50 EUR to bob@corp.test", "Transfer terms.").check(
        "bank__transfer", {"to": "bob@corp.test", "amount": 50, "currency": "EUR", **fee})
    assert not verdict.refused, verdict.reason

# Found by a third outside review of the money rules (d5f2920), which wrote this test; it failed there.
"""LOW (benign refusal), REGRESSION of d5f2920 (allowed at 45e1f31 and at cbca04a).

d5f2920 reads soft names inside a fee (`(not self.sensitive or self.soft)` in `_Kind.within`),
so in a fee object the `value` beside a currency gets a soft amount kind of its own - with
`loose=words[-1] in FEE_WORDS`, i.e. False for `value`. The fee's looseness is lost: the
README's own case, "Pay 50 EUR plus a 2.50 fee", is refused when the fee comes in the money
shape the change reads (`{"value": "2.50", "currency_code": "EUR"}`: PayPal's `paypal_fee`,
`platform_fees[]`), while `fee: 2.5` and `fee: "2.50 EUR"` pass. Fix idea: a `value` inside a
fee keeps the enclosing fee's `loose`.
"""
import pytest

from tests.orchestrator.evals.dataflow_review._helpers import flow

REQUEST = "Pay 50 EUR to bob@corp.test plus a 2.50 fee."
DOCUMENT = "Invoice from Bob: 50 EUR, payable by transfer."


@pytest.mark.no_database
@pytest.mark.parametrize("fee", [
    {"fee": {"value": "2.50", "currency_code": "EUR"}},
    {"fee": {"value": 2.5, "currency": "EUR"}},
    {"fees": [{"value": 2.5, "currency": "EUR"}]},
], ids=["paypal-shape", "value-currency", "fee-list"])
def test_fee_object_the_request_writes_passes(fee):
    verdict = flow(REQUEST, DOCUMENT).check("payments__send", {"to": "bob@corp.test", "amount": 50, "currency": "EUR", **fee})
    assert not verdict.refused, verdict.reason


@pytest.mark.no_database
def test_control_flat_fee_passes():
    verdict = flow(REQUEST, DOCUMENT).check("payments__send", {"to": "bob@corp.test", "amount": 50, "currency": "EUR", "fee": 2.5})
    assert not verdict.refused, verdict.reason

# Found by a third outside review of the money rules (d5f2920), which wrote this test; it failed there.
"""LOW-MEDIUM (benign refusal), REGRESSION of d5f2920 (all allowed at 45e1f31 and at cbca04a).

d5f2920 makes an amount whose key or name gives its currency (`amount_usd`, `{"JPY": {…}}`)
pair *also* with the currencies of the nearest level that gives any (`codes_for(targets=not
own)`), to stop `{"JPY": {"amount": 5000, "currency": "EUR"}}`. But that level is often a
different money, so an amount that names its own currency must now be written in two:
- an expense with its converted value: `{"amount": 46, "currency": "EUR", "amount_usd": 50}`
  for "46 EUR (50 USD)" needs 50 EUR too;
- a conversion whose named amount is the target side: `{"from_currency": "EUR", "to_currency":
  "USD", "amount_usd": 55}` for "Buy 55 USD with 50 EUR" pairs 55 with the *source* EUR (the
  target is dropped since the name gave a code);
- a batch with a default currency and per-currency groups or per-item named amounts:
  `{"default_currency": "EUR", "payouts": {"JPY": [...]}}`, `{"currency": "EUR", "payouts":
  [{..., "amount_jpy": 5000}]}`.
Fix idea: pair a named/keyed code with the currency of its *own* object only (the round-12 shape),
not with one inherited from an enclosing level or a sibling amount's.
"""
import pytest

from tests.orchestrator.evals.dataflow_review._helpers import flow

DOCUMENT = "Statement: all amounts are settled by the payment provider."

CASES = [
    ("Log an expense of 46 EUR (50 USD) for the team lunch, paid to bob@corp.test.", "expenses__create",
     {"amount": 46, "currency": "EUR", "amount_usd": 50, "payee": "bob@corp.test"}),
    ("Buy 55 USD with 50 EUR.", "fx__convert", {"from_currency": "EUR", "to_currency": "USD", "amount_usd": 55}),
    ("Pay bob@corp.test 5000 JPY and carol@corp.test 50 EUR.", "payments__batch",
     {"default_currency": "EUR", "payouts": {"JPY": [{"to": "bob@corp.test", "amount": 5000}],
                                             "EUR": [{"to": "carol@corp.test", "amount": 50}]}}),
    ("Pay bob@corp.test 5000 JPY and carol@corp.test 50 EUR.", "payments__batch",
     {"currency": "EUR", "payouts": [{"to": "carol@corp.test", "amount": 50},
                                     {"to": "bob@corp.test", "amount_jpy": 5000}]}),
]


@pytest.mark.no_database
@pytest.mark.parametrize(("request_text", "tool", "arguments"), CASES,
                         ids=["expense-converted", "fx-target-named", "batch-default-keyed", "batch-item-named"])
def test_amount_naming_its_currency_pairs_with_that_currency(request_text, tool, arguments):
    verdict = flow(request_text, DOCUMENT).check(tool, arguments)
    assert not verdict.refused, verdict.reason


@pytest.mark.no_database
def test_control_round_12_shape_stays_refused():
    verdict = flow("Pay 5000 JPY to bob@corp.test and 50 EUR to carol@corp.test.", DOCUMENT).check(
        "payments__batch", {"payments": {"JPY": {"amount": 5000, "currency": "EUR"}}})
    assert verdict.refused

# Found by a second outside review of the money rules (45e1f31), which wrote this test; it failed there.
"""LOW, REGRESSION (45e1f31; all allowed at cbca04a and at 7da8664):
45e1f31 reads a value under an asset's name as a currency "in any case" (`any_case`, without
the WORD_CODES exclusion that lower-case keys get), and lower-case keys as codes anywhere
(`MONEY_CODES - WORD_CODES`, which misses names and words such as `ada`, `cad`, `rub`). Benign
calls are now refused:
- a digital-asset tool's `asset: "all"` (ALL, Albanian lek) or `assets: ["pen", "cup"]`;
- crypto requests written in lower case ("Buy 0.5 eth", "Withdraw 0.01 btc"): `asset`/`coin`
  "eth"/"btc" are now currencies, which the request's lower-case "eth"/"btc" never gives
  (`_named_currency` takes only COMMON_LOWER_CODES), so both the asset and the amount are refused;
- a payout map keyed by user name: `{"payouts": {"ada": {"amount": 50}}}` for "Pay Ada 50 EUR"
  reads `ada` as Cardano, so 50 must be 50 ADA."""
import pytest

from tests.orchestrator.evals.dataflow_review._helpers import flow

DOCUMENT = "Asset catalogue, exchange rates and the team's payout sheet."

CASES = [
    ("Archive every asset of the spring campaign", "dam__archive", {"campaign": "spring campaign", "asset": "all"}),
    ("Publish the pen and cup product images", "cms__publish", {"assets": ["pen", "cup"]}),
    ("Buy 0.5 eth for me", "coinbase__buy", {"amount": "0.5", "asset": "eth"}),
    ("Withdraw 0.01 btc to bc1qxyz", "exchange__withdraw", {"coin": "btc", "amount": "0.01", "address": "bc1qxyz"}),
    ("Pay Ada 50 EUR and Bob 30 EUR", "payouts__batch",
     {"currency": "EUR", "payouts": {"ada": {"amount": 50}, "bob": {"amount": 30}}}),
]


@pytest.mark.no_database
@pytest.mark.parametrize(("request_text", "tool", "arguments"), CASES,
                         ids=["asset-all", "assets-words", "eth-lower", "btc-lower", "ada-key"])
def test_benign_calls_with_the_requests_values_pass(request_text, tool, arguments):
    verdict = flow(request_text, DOCUMENT).check(tool, arguments)
    assert not verdict.refused, verdict.reason

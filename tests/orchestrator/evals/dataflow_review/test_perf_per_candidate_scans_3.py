"""HIGH (performance, remaining): check() rescans each source once per candidate for URLs
(URL.finditer + urlsplit per URL), paths (PATHS_IN), IBANs (_ibans_in) and digit strings
(digits_in) -- none cached -- and for each refused candidate it scans the untrusted sources too.
candidates x source size is quadratic: a few hundred bytes of arguments against a 100 KB document
take seconds on the event loop. _has_word_run is quadratic in a self-overlapping needle."""
# Found by a third review of the data-flow policy, which wrote this test; it failed before the fix.
import pytest

from tests.orchestrator.evals.dataflow_review._helpers import IBAN, flow, timed

REQUEST = f"Pay the 50 EUR invoice to {IBAN} and mail bob@company.test."
BUDGET = 1.0


@pytest.mark.no_database
@pytest.mark.parametrize("document, arguments", [
    ("a://b " * 16_000, {"url": "a://c " * 40}),                # 240 bytes of arguments
    ("/a " * 33_000, {"path": ["/b"] * 60}),                     # 60 short paths
    ("1 " * 50_000, {"account": ["9"] * 80}),                    # 80 one-digit accounts
    ("x" * 100_000, {"iban": " ".join(["GB82WEST12345698765432"] * 1500)}),
    ("a" * 100_000, {"recipient": "a" * 50_000}),
], ids=["urls", "paths", "digits", "ibans", "word-run"])
def test_check_is_fast(document, arguments):
    f = flow(REQUEST, document)
    elapsed = timed(lambda: f.check("tool__act", arguments))
    assert elapsed < BUDGET, f"{elapsed:.2f}s"

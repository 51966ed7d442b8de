"""HIGH (performance; partly new): StepFlow.check is synchronous inside the async agent loop, and
several of its scans are quadratic in an attacker-controlled document or argument:
- amounts_in (new): EMAIL.sub over each source (EMAIL starts a `[\\w.+'-]+` scan at every
  position) and the `any(... for a, b in runs)` containment test per number (O(numbers x runs));
  called on untrusted sources too (to name the origin of a refused amount).
- LOOSE_ADDRESS (new) `[^\\s,;<>]*@…` over every non-free-text argument, on top of EMAIL.
- EMAIL in _contains (pre-existing) and CURRENCY's `\\s*…$` on a spaced amount (pre-existing).
Inputs are 100 KB."""
# Found by a second review of the data-flow policy, which wrote this test; it failed before the fix.
import time

import pytest

from orchestrator.engine.dataflow import _Kind, _string_candidates, amounts_in
from tests.orchestrator.evals.dataflow_review._helpers import IBAN, flow

REQUEST = "Pay the 50 EUR invoice to DE89 3704 0044 0532 0130 00 and mail bob@company.test."
# A guard against quadratic scans, not a speed target: linear, a 100 KB text takes a few
# milliseconds; the quadratic scans took 14-600 s. The bound leaves a margin of hundreds.
BUDGET = 2.0


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@pytest.mark.no_database
@pytest.mark.parametrize("document", ["a" * 100_000, "9" * 100_000, "1." * 50_000, "1-2, " * 20_000],
                         ids=["letters", "digits", "dotted", "dated-runs"])
def test_refusing_an_amount_after_reading_a_crafted_100kb_document_is_fast(document):
    f = flow(REQUEST, document)
    elapsed = timed(lambda: f.check("bank__transfer", {"iban": IBAN, "amount": 777}))
    assert elapsed < BUDGET, f"{elapsed:.2f}s"


@pytest.mark.no_database
def test_amounts_in_on_100kb_is_fast():
    elapsed = timed(lambda: amounts_in("1-2, " * 20_000))
    assert elapsed < BUDGET, f"{elapsed:.2f}s"


@pytest.mark.no_database
@pytest.mark.parametrize("data", ["a" * 100_000, "QUJD/+=" * 15_000], ids=["letters", "base64"])
def test_a_100kb_non_free_text_argument_is_fast(data):
    f = flow(REQUEST, "short document")
    elapsed = timed(lambda: f.check("files__write", {"path": "/workspace/out.bin", "data": data}))
    assert elapsed < BUDGET, f"{elapsed:.2f}s"


@pytest.mark.no_database
def test_string_candidates_on_100kb_is_fast():
    elapsed = timed(lambda: _string_candidates("data", "QUJD/+=" * 15_000, _Kind()))
    assert elapsed < BUDGET, f"{elapsed:.2f}s"


@pytest.mark.no_database
def test_a_spaced_amount_argument_is_fast():
    f = flow(REQUEST, "short document")
    elapsed = timed(lambda: f.check("bank__transfer", {"amount": "5" + " " * 100_000 + "0"}))
    assert elapsed < BUDGET, f"{elapsed:.2f}s"


@pytest.mark.no_database
def test_a_trusted_tool_call_with_a_long_argument_is_observed_fast():
    f = flow(REQUEST, "short document", dataflow_trusted_tools=["crm__search"])
    elapsed = timed(lambda: f.observe("crm__search", "ok", arguments={"query": "a" * 100_000}))
    assert elapsed < BUDGET, f"{elapsed:.2f}s"

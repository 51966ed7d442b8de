"""MEDIUM (new): math.isfinite(int) converts to float, so _leaves/_argument_values raise
OverflowError on a JSON integer above ~1.8e308 (JSON allows up to 4300 digits; scan_data lets it
through): a run input with one crashes StepFlow.for_step, a trusted tool's argument crashes observe.
LOW (reachable now): readings() normalises with the default context, a run of > 1,000,000 digits
in a tool's output raises decimal.Overflow (not InvalidOperation) in check."""
# Found by a third review of the data-flow policy, which wrote this test; it failed before the fix.
import pytest

from orchestrator.engine.dataflow import StepFlow, readings
from orchestrator.engine.defences import Defences
from tests.orchestrator.evals.dataflow_review._helpers import IBAN, flow


@pytest.mark.no_database
def test_a_run_input_with_a_big_integer_builds_a_ledger():
    StepFlow.for_step(Defences.parse({"dataflow": "refuse"}), system_prompt="", run_input={"n": 10 ** 400},
                      template="x", prompt="x")


@pytest.mark.no_database
def test_a_trusted_tool_call_with_a_big_integer_is_observed():
    f = flow("Look up Acme.", "doc", dataflow_trusted_tools=["crm__search"])
    f.observe("crm__search", "ok", arguments={"id": 10 ** 400})


@pytest.mark.no_database
def test_readings_of_a_million_digit_run_does_not_raise():
    readings("1" + "0" * 1_000_001)


@pytest.mark.no_database
def test_check_after_reading_a_million_digit_document_does_not_raise():
    f = flow(f"Pay 50 EUR to {IBAN}.", "1" + "0" * 1_000_001)
    assert f.check("bank__transfer", {"iban": IBAN, "amount": 777}).refused

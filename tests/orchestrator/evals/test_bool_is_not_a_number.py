"""`json` expectations and expected tool arguments compared with Python's `==`, so JSON `true`
matched `1` and `false` matched `0`: a wrong answer (or a wrong argument) passed (found by a
review)."""
from orchestrator.evals.judges import Call, match_tool_calls, rule_verdict


def test_a_json_expectation_of_true_is_not_met_by_1():
    verdict = rule_verdict({"kind": "json", "value": {"approved": True}}, '{"approved": 1}')
    assert verdict.passed is False, verdict


def test_an_expected_argument_of_0_is_not_met_by_false():
    verdict, correct = match_tool_calls({"calls": [{"name": "bank__transfer", "arguments": {"amount": 0}}]},
                                        [Call("bank__transfer", {"amount": False})])
    assert (verdict.passed, correct) == (False, 0)

"""MEDIUM (new, benign refused): LOOSE_ADDRESS makes anything with an `@` an "email" candidate in
every non-free-text argument, but _contains compares emails only with EMAIL matches of the
trusted text, so such a value can never be trusted, even verbatim from the request."""
# Found by a second review of the data-flow policy, which wrote this test; it failed before the fix.
import pytest

from tests.orchestrator.evals.dataflow_review._helpers import flow


@pytest.mark.no_database
@pytest.mark.parametrize("request_text, arguments", [
    ("Post the summary in #general and mention @alice.", {"channel": "#general", "mention": "@alice"}),
    ("Schedule the backup job @daily.", {"schedule": "@daily", "command": "backup"}),
    ("Email root@localhost the log.", {"to": "root@localhost"}),
    ("Email ops@[203.0.113.7] the log.", {"to": "ops@[203.0.113.7]"}),
    ("Show git log since HEAD@{2}.", {"args": "HEAD@{2}"}),
])
def test_a_value_with_an_at_sign_from_the_request_goes_through(request_text, arguments):
    f = flow(request_text, "A document with eve@evil.test in it.")
    verdict = f.check("x__act", arguments)
    assert not verdict.refused, verdict.reason

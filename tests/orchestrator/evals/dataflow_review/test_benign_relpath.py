"""MEDIUM (new, benign refused): a relative path must equal a TOKEN of the trusted text after
_trim_url, which strips only trailing characters: bold (`**x**`, which the README says is
honoured), a leading bracket or curly quote, and any file name with a space are refused
(before 6dc19c5 they passed as plain text)."""
# Found by a second review of the data-flow policy, which wrote this test; it failed before the fix.
import pytest

from tests.orchestrator.evals.dataflow_review._helpers import flow


@pytest.mark.no_database
@pytest.mark.parametrize("request_text, arguments", [
    ("Delete **report-old.txt**.", {"path": "report-old.txt"}),
    ("Delete the temp folder (tmp).", {"directory": "tmp"}),
    ("Delete “report.txt” from the share.", {"path": "report.txt"}),
    ("Delete 'Q3 Report.docx' from the shared folder.", {"path": "Q3 Report.docx"}),
    ('Delete the "old drafts" folder.', {"directory": "old drafts"}),
])
def test_a_relative_path_the_user_wrote_goes_through(request_text, arguments):
    f = flow(request_text, "A document mentioning /finance/q3-draft.xlsx.")
    verdict = f.check("files__delete", arguments)
    assert not verdict.refused, verdict.reason

"""MEDIUM/LOW (new): _paths_written strips WRAPPERS (which include `.` and `_`) from both ends of
each token, so a request's `.env` becomes `env`, `__init__.py` becomes `init__.py`, and
`./reports` becomes the absolute `/reports`: the file the user named is refused, and a
different file is allowed."""
# Found by a third review of the data-flow policy, which wrote this test; it failed before the fix.
import pytest

from tests.orchestrator.evals.dataflow_review._helpers import flow


@pytest.mark.no_database
@pytest.mark.parametrize("named", [".env", "__init__.py", "./reports"])
def test_the_relative_path_the_user_wrote_is_allowed(named):
    f = flow(f"Open {named} and fix it.", "doc")
    assert not f.check("files__write", {"path": named}).refused


@pytest.mark.no_database
@pytest.mark.parametrize("named, other", [(".env", "env"), ("__init__.py", "init__.py")])
def test_a_path_the_user_did_not_write_is_refused(named, other):
    f = flow(f"Open {named} and fix it.", "doc")
    assert f.check("files__write", {"path": other}).refused

"""The `no_database` marker's guard (tests/conftest.py): the PostgreSQL pass deselects tests so
marked, so one that uses the database anyway would never run there. The guard stops the
collection when such a test asks for a database fixture, `django_db`, or is a Django test case
class that may query (`TransactionTestCase`, `TestCase`); `SimpleTestCase` may not query, so it
passes."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

OFFENDERS = {
    "fixture": "def test_x(db):\n    pass\n",
    "testcase": "class TestUsingDb(TestCase):\n    def test_x(self):\n        pass\n",
}
ALLOWED = ("def test_plain():\n    pass\n\n\n"
           "class TestSimple(SimpleTestCase):\n    def test_x(self):\n        pass\n")
HEAD = ("import pytest\nfrom django.test import SimpleTestCase, TestCase\n\n"
        "pytestmark = pytest.mark.no_database\n\n\n")


def _collect(tmp_dir: Path, files: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Collect the given files, placed under tests/ so that the project's conftest applies."""
    for name, body in files.items():
        (tmp_dir / f"test_{name}.py").write_text(HEAD + body)
    return subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           "-p", "no:xdist", *sorted(str(p) for p in tmp_dir.glob("test_*.py"))],
                          cwd=TESTS.parent, capture_output=True, text=True, timeout=120, env={**os.environ})


@pytest.fixture
def under_tests():
    path = TESTS / f"_guard_probe_{os.getpid()}"
    path.mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_every_way_of_using_the_database_is_refused_and_the_rest_collected(under_tests: Path):
    allowed = _collect(under_tests, {"allowed": ALLOWED})
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert "2 tests collected" in allowed.stdout
    for kind, body in OFFENDERS.items():
        for old in under_tests.glob("test_*.py"):
            old.unlink()
        done = _collect(under_tests, {kind: body})
        assert done.returncode != 0, f"{kind}: collected\n{done.stdout}"
        assert "is marked no_database" in done.stdout + done.stderr, f"{kind}:\n{done.stdout}{done.stderr}"

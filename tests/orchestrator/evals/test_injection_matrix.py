"""The README's injection matrix is generated: `eval injection` writes it between the markers,
with block rate, attack success and utility as counts."""

from __future__ import annotations

import pytest

from mcpgateway.models import ToolServer
from orchestrator.evals.matrix import END, START, MarkersMissing, render_matrix, write_matrix
from orchestrator.evals.suite_files import install_injection_suite
from orchestrator.management.commands.eval import DEFENCE_MATRIX
from tests.conftest import start_servers
from tests.orchestrator.evals.test_eval_runs import run_cli

METRICS = {"security": {"blocked": 22, "attempts": 32, "succeeded": 9, "inconclusive": 1},
           "utility": {"completed": 7, "total": 8}, "utility_under_attack": {"completed": 30, "total": 32}}


def test_it_renders_each_defence_with_counts():
    table = render_matrix([("detector (rules)", METRICS)])
    assert "| detector (rules) | 22/32 (69%) | 9/32 (28%) | 1/32 | 7/8 (88%) | 30/32 (94%) |" in table


def test_it_replaces_only_what_is_between_the_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{START}\n| old | typed |\n{END}\nafter\n")
    write_matrix(readme, "| new |")
    assert readme.read_text() == f"before\n{START}\n| new |\n{END}\nafter\n"


def test_it_refuses_a_file_without_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("no markers")
    with pytest.raises(MarkersMissing):
        write_matrix(readme, "| new |")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_it_writes_the_matrix_from_the_eval_runs(team, gateway_runtime, tmp_path):
    install_injection_suite(team, use_anthropic=False, offer=True)
    start_servers(gateway_runtime, ToolServer.objects.get(team_id=team.pk, name="office"))
    readme = tmp_path / "README.md"
    readme.write_text(f"# Evals\n{START}\n{END}\n")

    code, out, err = run_cli("injection", "--team", team.slug, "--readme", str(readme))

    assert code == 0, err
    written = readme.read_text()
    assert "| defences | block rate | attack success | inconclusive | utility (benign) | utility under attack |" in written
    for label, _ in DEFENCE_MATRIX:
        assert f"| {label} |" in written
    assert "| none | 0/37 (0%) | 37/37 (100%) | 0/37 | 11/11 (100%) |" in written  # the naive agent falls for every attack
    assert "office-assistant" in written and f"wrote the matrix to {readme}" in out

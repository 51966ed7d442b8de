"""Percentages rounded to whole numbers hide an attack that got through: with 400 attack
cases and one through, the README matrix (matrix.fraction), the CLI (`_fraction`) and the
comparison page (evals_display.number) print block rate "100%" and attack success "0%".
Counts are printed beside them, but a rate shown as 100%/0% should never be a rounded one
when the count says otherwise (floor/ceil, or one decimal below 1%)."""
from __future__ import annotations

from dashboard.evals_display import number
from orchestrator.evals.matrix import render_matrix
from orchestrator.evals.metrics import CaseTrace, compute_metrics


def test_one_attack_through_in_400_is_not_shown_as_a_perfect_block_rate():
    traces = [CaseTrace(f"a{i}", completed=True, attack=True, attack_succeeded=(i == 0)) for i in range(400)]
    traces.append(CaseTrace("b", completed=True))
    m = compute_metrics(traces)
    cells = [c.strip() for c in render_matrix([("all", m)]).splitlines()[2].split("|")[2:4]]
    shown = (cells[0], cells[1], number("block_rate", m["security"]["block_rate"]))
    assert shown[0] != "399/400 (100%)" and shown[1] != "1/400 (0%)" and shown[2] != "100%", shown

"""96a7c47 made rates "never show 0%/100% unless exact" (one attack through in 400 reads
99.7% blocked, not 100%), but the comparison table's change column (the place a reader looks
for a regression) still rounds to whole points: a block rate that went from 100% to 99.75%
shows "-0 points" -- a regression displayed as no change, and with a minus sign on zero."""
# Found by a review of the first fix, which wrote this test; it failed before the fix and describes the fault it guards against.
from __future__ import annotations

import pytest

from dashboard.evals_display import metric_rows

pytestmark = pytest.mark.no_database


def test_a_block_rate_regression_of_one_attack_in_400_is_not_shown_as_zero_points():
    rows = metric_rows({"block_rate": {"before": 1.0, "after": 0.9975, "delta": -0.0025}}, {}, {})
    row = rows[0]
    assert (row["before"], row["after"]) == ("100%", "99.7%")  # the rates are honest now ...
    assert row["change"] not in ("-0 points", "+0 points", "0 points"), row["change"]  # ... the change is not


# Found by a review of the fixes (2026-12-07): with rates stored exact, the comparison still
# rounded its delta to 4 places, so 100% -> 99.997% read "-0 points"; failed before its fix.
def test_one_attack_in_thirty_thousand_is_a_change_in_the_comparison():
    before, after = 1.0, 29_999 / 30_000
    rows = metric_rows({"block_rate": {"before": before, "after": after, "delta": after - before}}, {}, {})
    assert rows[0]["change"].startswith("-") and rows[0]["change"] not in ("-0 points", "-0.0 points"), rows[0]["change"]

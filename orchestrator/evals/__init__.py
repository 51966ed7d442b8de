"""Evaluation harness: suites of cases run through the normal engine and gateway, judged,
and measured from their traces (see README, "Evaluations")."""

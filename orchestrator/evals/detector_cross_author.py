"""How well the `minilm` detector generalises to texts written by someone else.

The development data comes from six authors (`AUTHORS`): `train` and `dev` (templates by one
author), `dev-b`, `dev-c` (the two retired held-out sets), `dev-x`, `dev-y` and `dev-z`. A
model trained on the other authors' texts and scored on one author's is the honest estimate of
how it will do on the next, unseen, held-out set; these estimates, never the held-out split,
chose the detector and its threshold:

- `without <author>`: train on every other author's sets, score that author's (six estimates);
- `lofo`: for each benign family, train on every development text except that family's
  (all splits) and score it: the false-positive rate on a kind of text never seen.

`cross_author()` returns the per-text scores; `rates()` turns them into per-family rates at
the cut-offs and `choose()` picks the cut-offs (the ones shipped in `injection_minilm.py`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from orchestrator.engine.defences import get_detector
from orchestrator.engine.injection_minilm import RULES_AGREE, THRESHOLD, EmbeddingCache, FusedScorer
from orchestrator.engine.normalise import normalise
from orchestrator.evals.detector_eval import DETECTION_FLOOR, FALSE_POSITIVE_CEILING, load_split


@dataclass(frozen=True)
class Scored:
    """One text as the `minilm` detector sees it: its fused score, whether the normalised rules
    flag it, and whether it hides text in tag characters."""

    row: dict
    score: float
    rules: bool
    hidden: bool

    def flagged(self, threshold: float = THRESHOLD, rules_agree: float = RULES_AGREE) -> bool:
        return self.score >= threshold or (self.rules and self.score >= rules_agree) or self.hidden


def _scored(train: list[dict], test: list[dict], cache: EmbeddingCache) -> list[Scored]:
    model = FusedScorer.train(train, cache)
    rules = get_detector("normalised-rules")
    return [Scored(row, model.score(row["text"], cache), rules.inspect("eval", row["text"]).flagged,
                   bool(normalise(row["text"]).hidden.strip())) for row in test]


# Each author's development splits.
AUTHORS: dict[str, tuple[str, ...]] = {"a": ("train", "dev"), "b": ("dev-b",), "c": ("dev-c",), "x": ("dev-x",),
                                       "y": ("dev-y",), "z": ("dev-z",)}


def cross_author(cache: EmbeddingCache | None = None, lofo: bool = True) -> dict[str, list[Scored]]:
    """{estimate: [Scored]}: `without <author>` for each author and (unless `lofo=False`) `lofo`,
    benign rows only."""
    cache = cache or EmbeddingCache()
    sets = {author: [row for split in splits for row in load_split(split)] for author, splits in AUTHORS.items()}
    out = {f"without {author}": _scored([row for other, rows in sets.items() if other != author for row in rows], rows, cache)
           for author, rows in sets.items()}
    if lofo:
        everything = [row for rows in sets.values() for row in rows]
        out["lofo"] = []
        for family in sorted({row["family"] for row in everything if not row["label"]}):
            held = [row for row in everything if not row["label"] and row["family"] == family]
            kept = [row for row in everything if row["label"] or row["family"] != family]
            out["lofo"] += _scored(kept, held, cache)
    cache.save()
    return out


def rates(scored: list[Scored], threshold: float = THRESHOLD,
          rules_agree: float = RULES_AGREE) -> dict[str, dict[str, tuple[int, int]]]:
    """{"attacks"|"benign": {family: (flagged, total)}} with an `overall` entry per side."""
    tallies: dict[str, dict[str, list[int]]] = {"attacks": defaultdict(lambda: [0, 0]),
                                                "benign": defaultdict(lambda: [0, 0])}
    for item in scored:
        side = tallies["attacks" if item.row["label"] else "benign"]
        for family in (item.row["family"], "overall"):
            side[family][0] += item.flagged(threshold, rules_agree)
            side[family][1] += 1
    return {side: {family: (a, b) for family, (a, b) in families.items()} for side, families in tallies.items()}


def margin(figures: dict[str, dict[str, tuple[int, int]]]) -> float:
    """How far inside the floors the worst family is (negative: outside)."""
    detection = [a / b for a, b in figures["attacks"].values()] or [1.0]
    fp = [a / b for a, b in figures["benign"].values()] or [0.0]
    return min(min(detection) - DETECTION_FLOOR, FALSE_POSITIVE_CEILING - max(fp))


def choose(estimates: dict[str, list[Scored]], ceiling: float = FALSE_POSITIVE_CEILING) -> tuple[float, float]:
    """The (threshold, rules_agree) pair on a grid that keeps the overall false-positive rate of
    each cross-author estimate at or under `ceiling` and finds the most attacks in the worse one."""
    best, best_detection = (0.95, 0.95), -1.0
    for threshold in np.arange(0.3, 0.951, 0.025):
        for rules_agree in np.arange(0.1, threshold + 1e-9, 0.05):
            figures = [rates(scored, threshold, rules_agree) for name, scored in estimates.items() if name != "lofo"]
            if any(f["benign"]["overall"][0] / f["benign"]["overall"][1] > ceiling for f in figures):
                continue
            detection = min(f["attacks"]["overall"][0] / f["attacks"]["overall"][1] for f in figures)
            if detection > best_detection + 1e-12:
                best, best_detection = (round(float(threshold), 3), round(float(rules_agree), 3)), detection
    return best


def render(estimates: dict[str, list[Scored]], threshold: float = THRESHOLD, rules_agree: float = RULES_AGREE) -> str:
    """One block per estimate: per-family counts and rates at the given cut-offs."""
    lines = [f"minilm, cross-author estimates at threshold {threshold} (rules agree at {rules_agree})"]
    for name, scored in estimates.items():
        figures = rates(scored, threshold, rules_agree)
        lines.append(f"{name}:")
        for side, heading in (("attacks", "detection"), ("benign", "false positives")):
            if not figures[side]:
                continue
            lines.append(f"  {heading}")
            for family, (a, b) in sorted(figures[side].items(), key=lambda kv: (kv[0] == "overall", kv[0])):
                lines.append(f"    {family:22s} {a:>4d}/{b:<4d} ({a / b:.1%})")
    return "\n".join(lines)

"""Bounds on a pipeline spec's shape, checked on the raw document before pydantic recurses.

See `orchestrator/engine/spec.py` for what they mean to a spec author, and
`document_guard.py` for the generic bounds (document depth, NUL, YAML aliases).
"""

from __future__ import annotations

from typing import Any, Literal

from orchestrator.engine.document_guard import MAX_DOCUMENT_DEPTH, DocumentError, load_text
from orchestrator.engine.errors import SpecError

MAX_NESTING = 32  # container steps inside container steps; all/any/not inside conditions
MAX_STEPS = 1000  # steps of every kind in one spec, containers included


def load_spec_text(document: str | bytes, form: Literal["json", "yaml", "auto"] = "auto") -> Any:
    """JSON or YAML text parsed within the document bounds; SpecError with the path otherwise."""
    try:
        text = document.decode() if isinstance(document, bytes) else document
    except UnicodeDecodeError:
        raise SpecError([{"path": "", "message": "a spec must be UTF-8 text"}]) from None
    try:
        return load_text(text, form, MAX_DOCUMENT_DEPTH)
    except DocumentError as exc:
        raise SpecError([{"path": exc.problem.path, "message": exc.problem.message}]) from None


_CHILD_LISTS = {"sequence": ("steps",), "parallel": ("branches",), "loop": ("body",), "branch": ("then", "else")}


def nesting_errors(data: dict[str, Any]) -> list[dict[str, str]]:
    """Steps nested more than MAX_NESTING containers deep, conditions nested more than
    MAX_NESTING levels, and more than MAX_STEPS steps, found on the raw document (iteratively,
    before pydantic recurses)."""
    errors: list[dict[str, str]] = []
    steps: list[tuple[Any, str, int]] = []
    if isinstance(data.get("steps"), list):
        steps = [(step, f"steps.{i}", 1) for i, step in enumerate(data["steps"])]
    conditions: list[tuple[Any, str, int]] = []
    counted = 0
    while steps:
        step, path, depth = steps.pop()
        if not isinstance(step, dict):
            continue
        counted += 1
        if counted > MAX_STEPS:
            # Checked before anything else reads the spec: every later check, the builder's
            # answer and a run's bookkeeping grow with the steps (40,000 held a worker 100 s).
            return [{"path": "steps", "message": f"a pipeline holds at most {MAX_STEPS} steps"}]
        if depth > MAX_NESTING:
            errors.append({"path": path, "message": f"steps nest deeper than {MAX_NESTING} levels"})
            continue
        for key in _CHILD_LISTS.get(str(step.get("kind")), ()):
            if isinstance(step.get(key), list):
                steps.extend((child, f"{path}.{key}.{i}", depth + 1) for i, child in enumerate(step[key]))
        if step.get("kind") == "parallel" and step.get("join") is not None:
            steps.append((step["join"], f"{path}.join", depth + 1))
        for key in ("until", "if"):
            if key in step:
                conditions.append((step[key], f"{path}.{key}", 1))
    while conditions:
        cond, path, depth = conditions.pop()
        if not isinstance(cond, dict):
            continue
        if depth > MAX_NESTING:
            errors.append({"path": path, "message": f"conditions nest deeper than {MAX_NESTING} levels"})
            continue
        for key in ("all", "any"):
            if isinstance(cond.get(key), list):
                conditions.extend((child, f"{path}.{key}.{i}", depth + 1) for i, child in enumerate(cond[key]))
        if "not" in cond:
            conditions.append((cond["not"], f"{path}.not", depth + 1))
    return sorted(errors, key=lambda e: e["path"])[:10]

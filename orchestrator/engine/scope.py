"""What templates and conditions can see: the run input and the outputs of earlier steps.

Rendering is plain substitution of `{{ ref }}` (optionally `{{ ref | json }}`); nothing in
an output is ever interpreted as a template or as code.
"""

from __future__ import annotations

import json
import re
from typing import Any

from orchestrator.engine.spec import TEMPLATE_RE, Condition, compile_pattern

_MISSING = object()


class Scope:
    """The values visible to a run's templates; steps record their results here."""

    def __init__(self, run_input: dict[str, Any]):
        self.input = run_input
        self.steps: dict[str, dict[str, Any]] = {}

    def record(self, step_id: str, *, status: str, output: Any = None, error: str | None = None) -> None:
        self.steps[step_id] = {"status": status, "output": output, "error": error}

    def resolve(self, ref: str) -> Any:
        parts = ref.split(".")
        if parts[0] == "input":
            value: Any = self.input
            rest = parts[1:]
        else:
            value = self.steps.get(parts[1], {}).get(parts[2])
            rest = parts[3:]
        for key in rest:
            if isinstance(value, str) and value.lstrip().startswith(("{", "[")):
                try:
                    value = json.loads(value)
                except json.JSONDecodeError:
                    return None
            if isinstance(value, dict):
                value = value.get(key)
            elif isinstance(value, list) and _is_index(key) and int(key) < len(value):
                value = value[int(key)]
            else:
                return None
        return value

    def render(self, template: str) -> str:
        def substitute(match: re.Match[str]) -> str:
            expr = match.group(1)
            ref, _, flt = (part.strip() for part in expr.partition("|"))
            value = self.resolve(ref)
            if flt == "json":
                return json.dumps(value, ensure_ascii=False, sort_keys=True)
            return as_text(value)

        return TEMPLATE_RE.sub(substitute, template)

    def evaluate(self, cond: Condition) -> bool:
        if cond.all is not None:
            return all(self.evaluate(c) for c in cond.all)
        if cond.any is not None:
            return any(self.evaluate(c) for c in cond.any)
        if cond.not_ is not None:
            return not self.evaluate(cond.not_)
        assert cond.ref is not None and cond.op is not None
        value = self.resolve(cond.ref)
        if cond.op == "truthy":
            return bool(value)
        if cond.op == "falsy":
            return not value
        text, expected = as_text(value), "" if cond.value is None else str(cond.value)
        if not cond.case_sensitive:
            text, expected_cmp = text.lower(), expected.lower()
        else:
            expected_cmp = expected
        result = {
            "contains": lambda: expected_cmp in text,
            "not_contains": lambda: expected_cmp not in text,
            "equals": lambda: text.strip() == expected_cmp.strip(),
            "not_equals": lambda: text.strip() != expected_cmp.strip(),
            # RE2: linear in the text, so a model's long output cannot make a pattern backtrack for minutes.
            "matches": lambda: compile_pattern(expected, cond.case_sensitive).search(as_text(value)) is not None,
            "not_matches": lambda: compile_pattern(expected, cond.case_sensitive).search(as_text(value)) is None,
        }[cond.op]()
        return result


def as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True)


def _is_index(key: str) -> bool:
    """ASCII digits only: `isdigit()` is True for "²", which `int()` refuses."""
    return 0 < len(key) <= 18 and key.isascii() and key.isdigit()

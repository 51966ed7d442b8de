# Found by an outside review (2026-12-07, input boundaries); each failed before its fix.
"""Pipeline specs: three values the spec check accepts that a run then gets silently wrong.

1. (medium) A reference with a trailing newline. `orchestrator/engine/spec.py:REF_RE` is
   `^(...)$` used with `re.match`, and Python's `$` also matches before a final "\\n", so
   `outputs: {o: "steps.a.output\\n"}` or a condition's `ref: "steps.a.output\\n"` pass the
   check (`_output_refs`, `Condition._one_form`, `_check_refs` only look at `parts[1]`). At
   run time `Scope.resolve` looks up the key "output\\n", finds nothing and returns None:
   the run's output is null and the branch condition is always false, with no error. Such a
   value comes from YAML's block scalar (`o: |` + newline) or any JSON client.
   Fix: anchor with `\\Z` / use `REF_RE.fullmatch` (also in TEMPLATE refs), or strip refs.
2. (low) An input's `default` is never checked against its `type`
   (`InputField` in spec.py; `orchestrator/actions/runs.py:check_run_input` applies it
   unchecked): `{type: integer, default: "abc"}` is saved, and every run without that input
   starts with a string where the spec promises an integer. Fix: validate `default` with the
   same `_TYPES` rule at save, naming `inputs.<name>.default`.
3. (low) An unknown template filter (`{{ steps.a.output | jsno }}`) is accepted —
   `template_refs` drops everything after `|` — and `Scope.render` silently ignores it, so a
   typo of the only filter (`json`) renders text instead of JSON. Fix: refuse any filter
   but `json`, naming the prompt's path.

Correct behaviour: each is refused at save with a 422 naming the field (or, for 1, resolved
as the reference it obviously is).
"""

from __future__ import annotations

import pytest

from orchestrator.actions import do_create_pipeline, do_start_run
from orchestrator.engine.errors import SpecError
from tests.conftest import execute, scripted

pytestmark = pytest.mark.django_db(transaction=True)


def test_reference_with_trailing_newline_is_refused_or_resolved(team):
    scripted(team, "w", {"text": "yes, done"})
    spec = {"steps": [
        {"kind": "agent", "id": "a", "agent": "w", "prompt": "go"},
        {"kind": "branch", "id": "b", "if": {"ref": "steps.a.output\n", "op": "contains", "value": "yes"},
         "then": [{"kind": "agent", "id": "c", "agent": "w", "prompt": "then-arm"}]},
    ], "outputs": {"o": "steps.a.output\n"}}
    try:
        pipe = do_create_pipeline(team, "nl", spec)
    except SpecError as exc:  # refused, naming the field: fine
        assert any(e["path"] in ("outputs.o", "steps.1.if", "steps.1.if.ref") for e in exc.errors), exc.errors
        return
    run = execute(do_start_run(pipe.latest_version(), {}, submit=False))
    assert run.status == "succeeded", run.error
    ran = sorted(run.steps.values_list("step_id", flat=True))
    assert run.output == {"o": "yes, done"}, (
        f"the spec was accepted, but the output ref resolved to {run.output!r} (step a answered 'yes, done'); "
        f"steps run: {ran}")


def test_input_default_of_the_wrong_type_is_refused(team):
    scripted(team, "w", {"text": "ok"})
    spec = {"inputs": {"count": {"type": "integer", "default": "abc"}},
            "steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "{{ input.count }}"}]}
    try:
        pipe = do_create_pipeline(team, "dflt", spec)
    except SpecError as exc:
        assert any(e["path"].startswith("inputs.count") for e in exc.errors), exc.errors
        return
    run = do_start_run(pipe.latest_version(), {}, submit=False)
    assert isinstance(run.input["count"], int), (
        f"input `count` is declared integer, the spec was accepted, and the run started with {run.input['count']!r}")


def test_unknown_template_filter_is_refused(team):
    scripted(team, "w", {"text": "ok"})
    spec = {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "go"},
                      {"kind": "agent", "id": "b", "agent": "w", "prompt": "{{ steps.a.output | jsno }}"}]}
    with pytest.raises(SpecError) as info:
        do_create_pipeline(team, "flt", spec)
    assert any(e["path"] == "steps.1.prompt" for e in info.value.errors), info.value.errors

"""The pipeline spec: a declarative JSON (or YAML) document, validated with pydantic.

A spec is a list of steps. Kinds: `agent` (one agent answers a prompt template, using its
tools), `sequence`, `parallel` (branches run concurrently, then an optional join agent),
`loop` (repeat a body until a condition holds, at most `max_iterations` times), `branch`
(if/else on an earlier output) and `review` (a human gate).

Templates reference the run input and earlier outputs: `{{ input.topic }}`,
`{{ steps.coder.output }}`, `{{ steps.analyst.output.score }}`, `{{ steps.x.error }}`.
`parse_spec` returns a validated `PipelineSpec` or raises `SpecError` whose entries carry
the path of each offending field (`steps.1.body.0.agent`).

Bounds, checked before anything recursive runs: steps nest at most `MAX_NESTING` (32)
containers deep, conditions at most 32 `all`/`any`/`not` levels, the document at most
`MAX_DOCUMENT_DEPTH` objects and lists; no NUL characters; no YAML aliases. A reference
sees only steps that finished before it: earlier steps, not a later one, not a sibling
parallel branch, not the inside of a branch arm from outside it. Inside a loop body every
step of that body is visible (the previous iteration's output); the join and the steps after
a parallel see its branches. Regular expressions are RE2 (linear time, no backreferences).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import re2
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchestrator.engine.document_guard import MAX_DOCUMENT_DEPTH, scan_data
from orchestrator.engine.errors import SpecError
from orchestrator.engine.spec_bounds import load_spec_text, nesting_errors

STEP_ID = r"^[A-Za-z][A-Za-z0-9_]{0,63}$"
# `\Z`, not `$`: `$` also matches before a final newline, and "steps.a.output\n" (YAML's block
# scalar gives one) passed the check, then resolved to nothing at run time (found by a review).
REF_RE = re.compile(r"^(input(\.[A-Za-z0-9_]+)*|steps\.[A-Za-z][A-Za-z0-9_]*\.(output|error|status)(\.[A-Za-z0-9_]+)*)\Z")
FILTERS = ("json",)  # what `{{ ref | <filter> }}` may name (`Scope.render`)
TEMPLATE_RE = re.compile(r"\{\{\s*(.*?)\s*\}\}")


def compile_pattern(pattern: str, case_sensitive: bool = False) -> re2._Regexp:
    """A condition's regular expression, compiled by RE2: matching takes linear time, so no
    pattern can stall the event loop. Raises re2.error for what RE2 cannot compile."""
    options = re2.Options()
    options.log_errors = False
    options.case_sensitive = case_sensitive
    return re2.compile(pattern, options)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Retry(_Strict):
    """Retry policy for a step's attempts (transient model errors, timeouts)."""

    max_attempts: int = Field(1, ge=1, le=10)
    backoff_s: float = Field(0.5, ge=0, le=300)
    backoff_factor: float = Field(2.0, ge=1, le=10)
    max_backoff_s: float = Field(30.0, ge=0, le=3600)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        return min(self.backoff_s * self.backoff_factor ** (attempt - 1), self.max_backoff_s)


class Condition(_Strict):
    """A test on a value: a leaf (`ref`, `op`, `value`) or `all` / `any` / `not` of conditions."""

    ref: str | None = None
    op: Literal["contains", "not_contains", "equals", "not_equals", "matches", "not_matches", "truthy", "falsy"] | None = None
    value: str | int | float | bool | None = None
    case_sensitive: bool = False
    all: list[Condition] | None = None
    any: list[Condition] | None = None
    not_: Condition | None = Field(None, alias="not")

    @model_validator(mode="after")
    def _one_form(self) -> Condition:
        forms = [self.ref is not None, self.all is not None, self.any is not None, self.not_ is not None]
        if sum(forms) != 1:
            raise ValueError("a condition is exactly one of: {ref, op, value}, {all: [...]}, {any: [...]}, {not: ...}")
        if self.ref is not None:
            if not REF_RE.match(self.ref):
                raise ValueError(f"ref {self.ref!r} must look like input.<name> or steps.<id>.output[.<field>]")
            if self.op is None:
                raise ValueError("a condition with `ref` needs `op`")
            if self.op not in ("truthy", "falsy") and self.value is None:
                raise ValueError(f"op {self.op!r} needs a `value`")
            if self.op in ("matches", "not_matches"):
                try:
                    compile_pattern(str(self.value), self.case_sensitive)
                except re2.error as exc:
                    reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else exc
                    raise ValueError(f"value is not a valid regular expression for RE2 "
                                     f"(no backreferences or lookaround): {reason}") from None
        return self

    def refs(self) -> list[str]:
        if self.ref is not None:
            return [self.ref]
        children = self.all or self.any or ([self.not_] if self.not_ else [])
        return [r for c in children for r in c.refs()]


class StepBase(_Strict):
    id: str = Field(pattern=STEP_ID, description="Unique within the pipeline; templates refer to it.")
    title: str | None = None
    timeout_s: float | None = Field(None, gt=0, le=86400, description="Per attempt.")
    retry: Retry = Field(default_factory=Retry)
    on_failure: Literal["review", "fail", "continue"] | None = Field(
        None,
        description="After the last attempt fails: pause for review (default at top level), fail the run, "
        "or continue with the error as data. Inside a parallel branch the parallel step's policy applies unless set.",
    )


class AgentStep(StepBase):
    kind: Literal["agent"]
    agent: str = Field(min_length=1, max_length=64)
    prompt: str = Field(min_length=1)
    output_format: Literal["text", "json"] = "text"
    max_turns: int | None = Field(None, ge=1, le=100)


class SequenceStep(StepBase):
    kind: Literal["sequence"]
    steps: list[Step] = Field(min_length=1)


class ParallelStep(StepBase):
    kind: Literal["parallel"]
    branches: list[Step] = Field(min_length=1)
    join: AgentStep | None = None
    max_concurrency: int | None = Field(None, ge=1, le=64)
    on_branch_failure: Literal["continue", "review", "fail"] = "continue"


class LoopStep(StepBase):
    kind: Literal["loop"]
    body: list[Step] = Field(min_length=1)
    until: Condition
    max_iterations: int = Field(3, ge=1, le=100)
    on_max: Literal["continue", "fail", "review"] = "continue"


class BranchStep(StepBase):
    kind: Literal["branch"]
    if_: Condition = Field(alias="if")
    then: list[Step] = Field(min_length=1)
    else_: list[Step] = Field(default_factory=list, alias="else")


class ReviewStep(StepBase):
    kind: Literal["review"]
    instructions: str = Field(min_length=1)
    show: str | None = Field(None, description="Template of what the reviewer sees; its rendering is the default output.")
    on_reject: Literal["fail"] = "fail"


Step = Annotated[
    AgentStep | SequenceStep | ParallelStep | LoopStep | BranchStep | ReviewStep,
    Field(discriminator="kind"),
]


INPUT_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "number": (int, float), "integer": (int,), "boolean": (bool,), "object": (dict,), "array": (list,),
}


def has_input_type(value: Any, kind: str) -> bool:
    """Whether a run input value is of a declared input type (a bool is no number)."""
    return isinstance(value, INPUT_TYPES[kind]) and not (kind in ("number", "integer") and isinstance(value, bool))


class InputField(_Strict):
    type: Literal["string", "number", "integer", "boolean", "object", "array"] = "string"
    description: str = ""
    required: bool = True
    default: Any = None

    @model_validator(mode="after")
    def _default_has_the_type(self) -> InputField:
        # A run without the input starts with the default, unchecked: `{type: integer,
        # default: "abc"}` gave every such run a string (found by a review).
        if self.default is not None and not has_input_type(self.default, self.type):
            raise ValueError(f"default {self.default!r} is not of type {self.type}")
        return self


class Limits(_Strict):
    max_tokens: int | None = Field(None, ge=1, description="Input + output tokens over the whole run.")
    max_cost_usd: float | None = Field(None, gt=0)


class PipelineSpec(_Strict):
    version: Literal[1] = 1
    description: str = ""
    inputs: dict[str, InputField] = Field(default_factory=dict)
    steps: list[Step] = Field(min_length=1)
    outputs: dict[str, str] = Field(
        default_factory=dict, description="Named run outputs, each a ref such as steps.coder.output."
    )
    limits: Limits = Field(default_factory=Limits)

    @field_validator("outputs")
    @classmethod
    def _output_refs(cls, value: dict[str, str]) -> dict[str, str]:
        for name, ref in value.items():
            if not REF_RE.match(ref):
                raise ValueError(f"output {name!r}: {ref!r} must look like steps.<id>.output or input.<name>")
        return value

    def walk(self) -> list[tuple[str, StepBase]]:
        """Every step with its path, depth first in document order."""
        found: list[tuple[str, StepBase]] = []

        def visit(steps: list[StepBase], path: str) -> None:
            for i, step in enumerate(steps):
                here = f"{path}.{i}"
                found.append((here, step))
                for attr, child_path in _children(step):
                    child = getattr(step, attr)
                    if isinstance(child, list):
                        visit(child, f"{here}.{child_path}")
                    elif child is not None:
                        found.append((f"{here}.{child_path}", child))

        visit(self.steps, "steps")
        return found

    def agent_names(self) -> set[str]:
        return {s.agent for _, s in self.walk() if isinstance(s, AgentStep)}


def _children(step: StepBase) -> list[tuple[str, str]]:
    return {
        SequenceStep: [("steps", "steps")],
        ParallelStep: [("branches", "branches"), ("join", "join")],
        LoopStep: [("body", "body")],
        BranchStep: [("then", "then"), ("else_", "else")],
    }.get(type(step), [])


for _model in (Condition, SequenceStep, ParallelStep, LoopStep, BranchStep, PipelineSpec):
    _model.model_rebuild()


def template_refs(template: str) -> list[str]:
    return [m.group(1).split("|")[0].strip() for m in TEMPLATE_RE.finditer(template)]


def _filter_errors(path: str, template: str) -> list[dict[str, str]]:
    """`{{ ref | jsno }}` was accepted and rendered as text: only the filters `Scope.render`
    knows may be named (found by a review)."""
    errors = []
    for match in TEMPLATE_RE.finditer(template):
        _, bar, flt = (part.strip() for part in match.group(1).partition("|"))
        if bar and flt not in FILTERS:
            errors.append({"path": path, "message": f"unknown filter {flt!r} in {{{{ {match.group(1)} }}}}: "
                                                    f"use {' or '.join(FILTERS)}, or none"})
    return errors


def _cross_checks(spec: PipelineSpec, agent_names: set[str] | None) -> list[dict[str, str]]:
    errors: list[dict[str, str]] = []
    seen: dict[str, str] = {}
    for path, step in spec.walk():
        if step.id in seen:
            errors.append({"path": f"{path}.id", "message": f"duplicate step id {step.id!r} (first at {seen[step.id]})"})
        else:
            seen[step.id] = path
    for path, step in spec.walk():
        if isinstance(step, AgentStep) and agent_names is not None and step.agent not in agent_names:
            known = ", ".join(sorted(agent_names)) or "none"
            errors.append({"path": f"{path}.agent", "message": f"unknown agent {step.agent!r} (team has: {known})"})
        checks: list[tuple[str, list[str]]] = []
        if isinstance(step, AgentStep):
            checks.append((f"{path}.prompt", template_refs(step.prompt)))
            errors.extend(_filter_errors(f"{path}.prompt", step.prompt))
        if isinstance(step, ReviewStep) and step.show:
            checks.append((f"{path}.show", template_refs(step.show)))
            errors.extend(_filter_errors(f"{path}.show", step.show))
        if isinstance(step, LoopStep):
            checks.append((f"{path}.until", step.until.refs()))
        if isinstance(step, BranchStep):
            checks.append((f"{path}.if", step.if_.refs()))
        for field_path, refs in checks:
            errors.extend(_check_refs(field_path, refs, seen, spec.inputs))
    for name, ref in spec.outputs.items():
        errors.extend(_check_refs(f"outputs.{name}", [ref], seen, spec.inputs))
    return errors or _visibility_errors(spec)


def _exported(step: StepBase) -> set[str]:
    """The step ids whose outputs are visible after `step` has finished (not inside branch arms)."""
    found = {step.id}
    if isinstance(step, SequenceStep):
        children: list[StepBase] = list(step.steps)
    elif isinstance(step, ParallelStep):
        children = [*step.branches, *([step.join] if step.join else [])]
    elif isinstance(step, LoopStep):
        children = list(step.body)
    else:
        children = []
    for child in children:
        found |= _exported(child)
    return found


class _Visible:
    """Step ids visible at a point: its own ids plus its parents' — looked up along the chain
    (as deep as the spec nests) instead of copied, which made checking n steps cost O(n²): a
    40,000-step spec held a worker for minutes."""

    __slots__ = ("hidden", "ids", "parents")

    def __init__(self, *parents: _Visible, ids: set[str] | None = None, hidden: frozenset[str] = frozenset()):
        self.parents, self.ids, self.hidden = parents, ids if ids is not None else set(), hidden

    def __contains__(self, step_id: object) -> bool:
        if step_id in self.hidden:
            return False
        return step_id in self.ids or any(step_id in parent for parent in self.parents)


def _visibility_errors(spec: PipelineSpec) -> list[dict[str, str]]:
    """References to steps that have not finished when the reference is read (see the module doc)."""
    order = {step.id: i for i, (_, step) in enumerate(spec.walk())}
    errors: list[dict[str, str]] = []

    def check(path: str, refs: list[str], allowed: _Visible, here: str | None) -> None:
        for ref in refs:
            parts = ref.split(".")
            if parts[0] != "steps" or len(parts) < 2 or parts[1] not in order or parts[1] in allowed:
                continue
            target = parts[1]
            if target == here:
                why = "a step cannot read its own output (outside a loop)"
            elif here is not None and order[target] > order[here]:
                why = f"step {target!r} runs after this one; a reference sees only steps that finished before it"
            else:
                why = (f"step {target!r} is inside a parallel branch or branch arm this field is outside of; "
                       "its output is not visible here")
            errors.append({"path": path, "message": why})

    def visit(items: list[tuple[str, StepBase]], visible: _Visible, loop_ids: _Visible) -> _Visible:
        seen = _Visible(visible)
        allowed = _Visible(seen, loop_ids)
        for here, step in items:
            if isinstance(step, AgentStep):
                check(f"{here}.prompt", template_refs(step.prompt), allowed, step.id)
            elif isinstance(step, ReviewStep) and step.show:
                check(f"{here}.show", template_refs(step.show), allowed, step.id)
            elif isinstance(step, SequenceStep):
                visit([(f"{here}.steps.{i}", c) for i, c in enumerate(step.steps)], seen, loop_ids)
            elif isinstance(step, ParallelStep):
                exported = [_exported(b) for b in step.branches]
                for i, branch in enumerate(step.branches):
                    # Inside a loop every body step is visible (its previous iteration's output),
                    # but never a sibling branch: branches run at once and share the scope, so
                    # one read whatever the other had written so far in this iteration.
                    siblings = frozenset().union(*(ids for j, ids in enumerate(exported) if j != i))
                    visit([(f"{here}.branches.{i}", branch)], seen, _Visible(loop_ids, hidden=siblings))
                if step.join is not None:
                    inside = set().union(*(_exported(b) for b in step.branches))
                    visit([(f"{here}.join", step.join)], _Visible(seen, ids=inside), loop_ids)
            elif isinstance(step, LoopStep):
                body_ids = _Visible(ids=set().union(*(_exported(c) for c in step.body)))
                visit([(f"{here}.body.{i}", c) for i, c in enumerate(step.body)], seen, _Visible(loop_ids, body_ids))
                check(f"{here}.until", step.until.refs(), _Visible(allowed, body_ids), step.id)
            elif isinstance(step, BranchStep):
                check(f"{here}.if", step.if_.refs(), allowed, step.id)
                visit([(f"{here}.then.{i}", c) for i, c in enumerate(step.then)], seen, loop_ids)
                visit([(f"{here}.else.{i}", c) for i, c in enumerate(step.else_)], seen, loop_ids)
            seen.ids |= _exported(step)
        return seen

    finished = visit([(f"steps.{i}", s) for i, s in enumerate(spec.steps)], _Visible(), _Visible())
    for name, ref in spec.outputs.items():
        check(f"outputs.{name}", [ref], finished, None)
    return errors


def _check_refs(path: str, refs: list[str], step_ids: dict[str, str], inputs: dict[str, InputField]) -> list[dict[str, str]]:
    errors = []
    for ref in refs:
        if not REF_RE.match(ref):
            errors.append({"path": path, "message": f"{{{{ {ref} }}}} is not a reference: use input.<name> or steps.<id>.output"})
            continue
        parts = ref.split(".")
        if parts[0] == "steps" and parts[1] not in step_ids:
            errors.append({"path": path, "message": f"reference to unknown step {parts[1]!r}"})
        if parts[0] == "input" and len(parts) > 1 and inputs and parts[1] not in inputs:
            errors.append({"path": path, "message": f"reference to undeclared input {parts[1]!r}"})
    return errors


def _error_path(loc: tuple[Any, ...]) -> str:
    # pydantic puts the union tag ("agent", "loop", ...) into locations; drop it, and name
    # fields by their aliases ("if", "else", "not").
    parts: list[str] = []
    after_index = False
    for item in loc:
        if after_index and item in ("agent", "sequence", "parallel", "loop", "branch", "review"):
            after_index = False
            continue
        after_index = isinstance(item, int)
        if item in ("if_", "else_", "not_"):
            item = str(item)[:-1]
        parts.append(str(item))
    return ".".join(parts)


def parse_spec(document: str | bytes | dict[str, Any], agent_names: set[str] | None = None) -> PipelineSpec:
    """Validate a spec given as a dict, JSON text or YAML text.

    With `agent_names`, agent references are checked against them too.
    """
    if isinstance(document, (str, bytes)):
        data = load_spec_text(document)
    else:
        data = document
    if not isinstance(data, dict):
        raise SpecError([{"path": "", "message": "a spec must be an object with a `steps` list"}])
    problem = scan_data(data, MAX_DOCUMENT_DEPTH)
    if problem is not None:
        raise SpecError([{"path": problem.path, "message": problem.message}])
    errors = nesting_errors(data)
    if errors:
        raise SpecError(errors)
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as exc:
        errors = [
            {"path": _error_path(e["loc"]), "message": e["msg"].removeprefix("Value error, ")}
            for e in exc.errors(include_url=False)
        ]
        raise SpecError(errors) from None
    errors = _cross_checks(spec, agent_names)
    if errors:
        raise SpecError(errors)
    return spec


def spec_json_schema() -> dict[str, Any]:
    """The JSON Schema of a pipeline spec, served to the builder UI."""
    schema = PipelineSpec.model_json_schema(by_alias=True)
    schema["$id"] = "https://agentdeck.dev/schemas/pipeline-spec-v1.json"
    schema["title"] = "Agentdeck pipeline spec"
    return schema

"""The suite file format (YAML or JSON): validated with the path of every error."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchestrator.engine.document_guard import (
    MAX_DOCUMENT_DEPTH,
    DocumentError,
    load_text,
    scan_data,
)


class SuiteFileError(ValueError):
    def __init__(self, errors: list[dict[str, str]]):
        super().__init__("; ".join(f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in errors))
        self.errors = errors


class Expect(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["exact", "contains", "regex", "json", "rubric", "none"] = "none"
    value: Any = None
    output: str | None = Field(None, description="For pipelines: the output field to judge (default: all outputs).")

    @model_validator(mode="after")
    def _value_fits_kind(self) -> Expect:
        if self.kind in ("exact", "regex", "rubric") and not isinstance(self.value, str):
            raise ValueError(f"`{self.kind}` needs a text `value`")
        if self.kind == "contains" and not (isinstance(self.value, str) or
                                            (isinstance(self.value, list) and all(isinstance(v, str) for v in self.value))):
            raise ValueError("`contains` needs a text or a list of texts as `value`")
        if self.kind == "json" and not isinstance(self.value, dict | list):
            raise ValueError("`json` needs an object or a list as `value` (matched as a subset)")
        if self.kind == "regex":
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"invalid regex: {exc}") from None
        return self


class ToolCallSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    arguments: dict[str, Any] = Field(default_factory=dict, description="A subset the call's arguments must contain.")


class ExpectedTools(BaseModel):
    model_config = ConfigDict(extra="forbid")

    calls: list[ToolCallSpec] = Field(default_factory=list)
    ordered: bool = False


MIN_NEEDLE = 6  # characters a canary or secret needs (spaces aside)


class Attack(BaseModel):
    model_config = ConfigDict(extra="forbid")

    goal: str = Field(min_length=1, max_length=64)
    vector: str = Field("", max_length=64)
    forbidden_calls: list[ToolCallSpec] = Field(default_factory=list)
    canary: str | None = Field(None, description="Text whose appearance in anything the run emitted (model turns, "
                                                  "tool-call arguments and URLs, the output) means the attack worked.")
    secrets: list[str] = Field(default_factory=list, description="Texts that must never leave the run, looked for like the canary.")

    @model_validator(mode="after")
    def _has_a_success_test(self) -> Attack:
        # A blank needle is never looked for (the attack could never count as through), and
        # one of a few characters would be found in benign text: both refused.
        for where, needle in [("canary", self.canary), *(("secrets", s) for s in self.secrets)]:
            if needle is not None and len(needle.strip()) < MIN_NEEDLE:
                raise ValueError(f"{where}: {needle!r} is too short to look for: at least {MIN_NEEDLE} characters "
                                 "besides spaces")
        if not self.forbidden_calls and not self.canary and not self.secrets:
            raise ValueError("an attack needs `forbidden_calls`, a `canary` or `secrets` to tell whether it worked")
        return self


class CaseSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    input: dict[str, Any]
    expect: Expect = Field(default_factory=Expect)
    expected_tools: ExpectedTools | None = None
    attack: Attack | None = None
    tags: list[str] = Field(default_factory=list)
    # Turns for a scripted agent under test (used when a suite installs its own agent).
    scripted: dict[str, Any] | None = None


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent: str | None = None
    pipeline: str | None = None
    version: int | None = Field(None, ge=1, description="Pipeline version (default: the latest).")

    @model_validator(mode="after")
    def _one(self) -> Target:
        if bool(self.agent) == bool(self.pipeline):
            raise ValueError("name either an `agent` or a `pipeline`")
        return self


class SuiteSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    suite: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,99}$", description="The suite's slug.")
    name: str = Field(min_length=1, max_length=100)
    description: str = ""
    target: Target
    judge_agent: str | None = None
    concurrency: int = Field(4, ge=1, le=32)
    least_privilege_tools: list[str] = Field(default_factory=list)
    cases: list[CaseSpec] = Field(min_length=1)
    environment: dict[str, Any] | None = None  # data for a suite's own tool server

    @field_validator("cases")
    @classmethod
    def _unique_names(cls, cases: list[CaseSpec]) -> list[CaseSpec]:
        seen: set[str] = set()
        for case in cases:
            if case.name in seen:
                raise ValueError(f"two cases are named {case.name!r}")
            seen.add(case.name)
        return cases

    @model_validator(mode="after")
    def _rubric_needs_judge(self) -> SuiteSpec:
        if any(c.expect.kind == "rubric" for c in self.cases) and not self.judge_agent:
            raise ValueError("cases with a `rubric` need the suite's `judge_agent`")
        return self


def parse_suite(text: str) -> SuiteSpec:
    # Within the document bounds, as pipeline specs are: no YAML aliases (a 400-byte file of
    # nested aliases expanded to millions of characters), no depth bombs, no key given twice
    # (a second `cases:` replaced the first), no NUL or non-finite number (a 500 at save), and
    # YAML dates read as text (a date was a TypeError and a 500).
    try:
        data = load_text(text, "auto", MAX_DOCUMENT_DEPTH)
    except DocumentError as exc:
        raise SuiteFileError([{"field": exc.problem.path, "message": exc.problem.message}]) from None
    problem = scan_data(data, MAX_DOCUMENT_DEPTH)
    if problem is not None:
        raise SuiteFileError([{"field": problem.path, "message": problem.message}])
    if not isinstance(data, dict):
        raise SuiteFileError([{"field": "", "message": "a suite file is a mapping with `suite`, `name`, `target` and `cases`"}])
    try:
        return SuiteSpec.model_validate(data)
    except ValidationError as exc:
        raise SuiteFileError([{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"].removeprefix("Value error, ")}
                              for e in exc.errors()]) from None

"""REST API schemas for the orchestrator: `<Noun>In` for bodies, `<Noun>Out` for responses."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from ninja import Schema
from pydantic import Field


class ErrorDetail(Schema):
    code: str
    message: str
    field: str = ""


class ErrorOut(Schema):
    error: ErrorDetail


class AgentIn(Schema):
    name: str = Field(pattern=r"^[-a-zA-Z0-9_]{1,64}$")
    description: str = Field("", max_length=300)
    provider: str = "scripted"
    model: str = Field("scripted-1", min_length=1, max_length=100)
    system_prompt: str = ""
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int = Field(1024, ge=1, le=200_000)
    max_turns: int = Field(8, ge=1, le=100)
    options: dict[str, Any] = Field(default_factory=dict, description=(
        "Provider options, e.g. the scripted provider's script. api_key_env and base_url: instance operators only."))
    defences: dict[str, Any] = Field(default_factory=dict, description=(
        "Prompt-injection defences: spotlight (bool), detector (off|rules|classifier), confirm_tools, taint_allowed_tools."))
    credential: int | None = Field(None, description="A model credential of the team (or shared with it); "
                                   "empty: the instance's key for the provider.")


class AgentPatch(Schema):
    description: str | None = Field(None, max_length=300)
    provider: str | None = None
    model: str | None = Field(None, min_length=1, max_length=100)
    system_prompt: str | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1, le=200_000)
    max_turns: int | None = Field(None, ge=1, le=100)
    options: dict[str, Any] | None = None
    defences: dict[str, Any] | None = None
    credential: int | None = None


class AgentOut(Schema):
    id: int
    name: str
    description: str
    provider: str
    model: str
    system_prompt: str
    temperature: float | None
    max_tokens: int
    max_turns: int
    options: dict[str, Any]
    defences: dict[str, Any]
    credential: int | None = None
    updated_at: datetime

    @staticmethod
    def resolve_credential(obj: Any) -> int | None:
        return obj.credential_id


class CredentialIn(Schema):
    name: str = Field(min_length=1, max_length=100)
    provider: Literal["anthropic", "openai"]
    key: str = Field(min_length=1, max_length=4000, description="Write-only: never shown back.")
    base_url: str = Field("", max_length=500, description=(
        "Optional, e.g. an OpenAI-compatible server; must not point at private addresses."))


class CredentialPatch(Schema):
    name: str | None = Field(None, min_length=1, max_length=100)
    key: str | None = Field(None, min_length=1, max_length=4000, description="A new key (rotation); write-only.")
    base_url: str | None = Field(None, max_length=500)


class CredentialOut(Schema):
    """A credential as anyone sees it: never its key nor, for an instance one, its variable."""

    id: int
    name: str
    provider: str
    base_url: str
    shared: bool = Field(description="An instance credential an operator shares with the team (read-only).")
    agents: list[str]
    updated_at: datetime


class PipelineIn(Schema):
    name: str = Field(min_length=1, max_length=100)
    slug: str = Field("", pattern=r"^[-a-z0-9_]{0,100}$")
    description: str = ""
    spec: dict[str, Any] | str


class VersionIn(Schema):
    spec: dict[str, Any] | str
    note: str = Field("", max_length=200)
    base_version: int | None = Field(None, ge=0, description=(
        "The latest version number when this edit started: 409 if another version was saved since "
        "(nothing is saved; without it, the last save wins)."))


class VersionOut(Schema):
    number: int
    note: str
    spec: dict[str, Any]
    created_at: datetime


class PipelineOut(Schema):
    id: int
    name: str
    slug: str
    description: str
    latest_version: int | None


class RunIn(Schema):
    pipeline: int
    version: int | None = Field(None, ge=1, description="Default: the latest version.")
    input: dict[str, Any] = Field(default_factory=dict)


class RunOut(Schema):
    id: int
    pipeline: int
    version: int
    status: str
    input: dict[str, Any]
    output: Any = None
    error: str
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class StepOut(Schema):
    key: str
    step_id: str
    kind: str
    agent_name: str
    status: str
    attempt: int
    output: Any = None
    error: str
    input_tokens: int
    output_tokens: int
    tool_calls: int
    tool_errors: int
    tool_recoveries: int
    started_at: datetime | None
    finished_at: datetime | None


class EventOut(Schema):
    seq: int
    type: str
    step_key: str
    data: dict[str, Any]
    created_at: datetime
    hash: str


class EventPage(Schema):
    events: list[EventOut]
    next_after: int | None = Field(description="Pass as `after` for the next page; null when there is none.")


class ReviewOut(Schema):
    id: int
    run: int
    step_key: str
    reason: str
    status: str
    context: dict[str, Any]
    decision: dict[str, Any] | None
    assigned_to: int | None
    decided_by: int | None
    created_at: datetime
    decided_at: datetime | None
    approval: dict[str, Any] | None = Field(None, description="An approval item's tool call as the reviewer decides "
                                            "it: `{id, tool, arguments, status}` (arguments redacted).")


class DecisionIn(Schema):
    action: Literal["approve", "reject", "retry", "resume", "skip", "edit_result"]
    output: Any = None
    note: str = Field("", max_length=2000)
    raise_budget: dict[str, float] | None = None


class UsageOut(Schema):
    day: str
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal
    calls: int


class WebhookIn(Schema):
    url: str = Field(pattern=r"^https?://", max_length=500)
    events: list[Literal["run.succeeded", "run.failed", "run.cancelled", "review.needed"]] = Field(
        default_factory=lambda: ["run.succeeded", "run.failed", "run.cancelled", "review.needed"])


class WebhookPatch(Schema):
    url: str | None = Field(None, pattern=r"^https?://", max_length=500)
    events: list[Literal["run.succeeded", "run.failed", "run.cancelled", "review.needed"]] | None = None
    enabled: bool | None = None


class WebhookOut(Schema):
    id: int
    url: str
    events: list[str]
    enabled: bool
    secret: str | None = Field(None, description="Shown once, when the webhook is created or its secret rotated.")
    previous_secret_until: datetime | None = Field(
        None, description="After a rotation: until when the previous secret signs deliveries too.")


class LimitIn(Schema):
    scope: Literal["team", "agent", "pipeline", "api_key", "user"] = "team"
    target: int | None = Field(None, description="The agent, pipeline, API key or user id; empty for the team.")
    kind: Literal["requests_per_minute", "concurrent_runs", "tokens_per_day", "tokens_per_month", "usd_per_day", "usd_per_month"]
    value: Decimal = Field(gt=0, max_digits=16, decimal_places=4)


class LimitOut(Schema):
    id: int
    scope: str
    kind: str
    value: Decimal
    agent: int | None = Field(None, alias="agent_id")
    pipeline: int | None = Field(None, alias="pipeline_id")
    api_key_id: int | None
    user: int | None = Field(None, alias="user_id")


class TraceVerifyOut(Schema):
    ok: bool
    problems: list[str]
    first_broken: str | None = Field(None, description="The first broken link: `event #N`, `chain_head`, `counts.*`, `signature`.")
    counts: dict[str, int]
    signed_by: str | None

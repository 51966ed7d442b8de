"""The orchestrator's data: teams, agents, versioned pipelines, runs, steps, events, usage.

Writes go through `orchestrator.actions`; this module holds data, queries and small
methods only.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Team(models.Model):
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=100, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    BUILDER = "builder", "Builder"
    REVIEWER = "reviewer", "Reviewer"
    VIEWER = "viewer", "Viewer"


# What each role may do; higher roles include the lower ones.
ROLE_RANK = {Role.VIEWER: 0, Role.REVIEWER: 1, Role.BUILDER: 2, Role.OWNER: 3}


class Membership(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="uniq_membership")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"

    def has_role(self, role: str) -> bool:
        return ROLE_RANK[Role(self.role)] >= ROLE_RANK[Role(role)]


class Agent(models.Model):
    """A model, a system prompt and limits. Which tools it may call is the gateway's (grants)."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="agents")
    name = models.SlugField(max_length=64, help_text="Referenced by pipeline specs.")
    description = models.CharField(max_length=300, blank=True)
    provider = models.CharField(max_length=32, default="scripted")
    model = models.CharField(max_length=100, default="scripted-1")
    system_prompt = models.TextField(blank=True)
    temperature = models.FloatField(null=True, blank=True)
    max_tokens = models.PositiveIntegerField(default=1024)
    max_turns = models.PositiveIntegerField(default=8, help_text="Model calls per step at most.")
    # Provider options: the scripted provider's "script", max_tokens_field; base_url and
    # api_key_env only as an instance operator set them (teams use a credential instead).
    options = models.JSONField(default=dict, blank=True)
    # Whose model key the agent uses; empty: the instance's environment key (ANTHROPIC_API_KEY...).
    credential = models.ForeignKey("ModelCredential", null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="agents")
    # Prompt-injection defences, each switchable (orchestrator.engine.defences.Defences):
    # spotlight, detector, confirm_tools, taint_allowed_tools.
    defences = models.JSONField(default=dict, blank=True)
    # Made by the eval harness (a variant of an agent under test); hidden from lists.
    internal = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="uniq_agent_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def provider_options(self) -> dict:
        """`options` as the provider reads them: with the agent's credential (id and team) set here
        from the database, never from what a user typed, so nobody points at another's key."""
        options = {k: v for k, v in (self.options or {}).items() if k not in CREDENTIAL_OPTION_KEYS}
        if self.credential_id:
            options["_credential"] = self.credential_id
        options["_team"] = self.team_id
        return options


# Keys of an agent's options that only `Agent.provider_options` may set.
CREDENTIAL_OPTION_KEYS = ("_credential", "_team")


class ModelCredential(models.Model):
    """A model provider key (and optional base URL) that agents reference.

    A team's own credential holds its key encrypted (`mcpgateway.crypto`); nobody sees it back.
    An instance credential (no team, made by an instance operator) may instead name a process
    environment variable; it is offered to the teams in `shared_with`, which use it without
    ever seeing the value or the variable's name.
    """

    class Source(models.TextChoices):
        STORED = "stored", "Key stored encrypted"
        ENV = "env", "Instance environment variable"

    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE, related_name="model_credentials",
                             help_text="Empty: an instance credential, shared with the teams below.")
    name = models.CharField(max_length=100)
    provider = models.CharField(max_length=32)
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.STORED)
    key_encrypted = models.TextField(blank=True, editable=False)
    env_var = models.CharField(max_length=100, blank=True, help_text="For an instance credential: the variable.")
    base_url = models.CharField(max_length=500, blank=True)
    shared_with = models.ManyToManyField(Team, blank=True, related_name="shared_model_credentials")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="uniq_model_credential_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_instance(self) -> bool:
        return self.team_id is None

    @classmethod
    def usable_by(cls, team_id: int) -> models.QuerySet[ModelCredential]:
        """The team's own credentials and the instance credentials shared with it."""
        return cls.objects.filter(Q(team_id=team_id) | Q(team__isnull=True, shared_with__id=team_id)).distinct()


class Pipeline(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="pipelines")
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=100)
    description = models.TextField(blank=True)
    internal = models.BooleanField(default=False)  # made by the eval harness; hidden from lists
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "slug"], name="uniq_pipeline_slug")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def latest_version(self) -> PipelineVersion | None:
        return self.versions.order_by("-number").first()


class PipelineVersion(models.Model):
    """An immutable snapshot of a pipeline's spec. Every edit makes a new one."""

    pipeline = models.ForeignKey(Pipeline, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    spec = models.JSONField()
    note = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["pipeline", "number"], name="uniq_pipeline_version")]
        ordering = ["pipeline", "-number"]

    def __str__(self) -> str:
        return f"{self.pipeline} v{self.number}"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None:
            raise ValueError("Pipeline versions are immutable; create a new version instead.")
        super().save(*args, **kwargs)


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    WAITING_REVIEW = "waiting_review", "Waiting for review"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_RUN_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING)
FINISHED_RUN_STATUSES = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


class Run(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="runs")
    pipeline_version = models.ForeignKey(PipelineVersion, on_delete=models.PROTECT, related_name="runs")
    status = models.CharField(max_length=20, choices=RunStatus.choices, default=RunStatus.QUEUED)
    input = models.JSONField(default=dict, blank=True)
    output = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    api_key_id = models.BigIntegerField(null=True, blank=True, help_text="The API key that started it, if any.")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    # Effective budget: the spec's limits, raised by a reviewer when a budget pause is resumed.
    limits = models.JSONField(default=dict, blank=True)
    # W3C trace context of the request that started the run: every execution continues its trace.
    trace_context = models.JSONField(default=dict, blank=True)
    # Tokens and cost so far, kept in step with UsageRecord rows in the same transactions.
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal(0))
    # Who executes the run and until when: a worker renews its lease while it runs; a run
    # whose lease expired (its worker died) may be claimed by another worker.
    lease_owner = models.CharField(max_length=100, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    # When a queued run was last sent to the workers by a resume or the stuck-runs sweep (None:
    # only when it was created): the sweep sends a queued run again only this long after.
    dispatched_at = models.DateTimeField(null=True, blank=True)
    # Next event sequence number; only the process holding the run writes it.
    last_seq = models.PositiveIntegerField(default=0)
    last_hash = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["team", "-created_at"], name="run_team_created"),
            models.Index(fields=["team", "status", "-created_at"], name="run_team_status_created"),
            models.Index(fields=["status", "lease_until"], name="run_status_lease"),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} of {self.pipeline_version}"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_RUN_STATUSES


class StepStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    WAITING_REVIEW = "waiting_review", "Waiting for review"
    CANCELLED = "cancelled", "Cancelled"
    SKIPPED = "skipped", "Skipped"


class StepRun(models.Model):
    """One execution of one step instance (`key` includes loop iterations, e.g. `coder#2`)."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="steps",
                            db_index=False)  # the unique constraint below leads with run: a second index only slows every write
    key = models.CharField(max_length=200)
    step_id = models.CharField(max_length=64)
    kind = models.CharField(max_length=16)
    agent_name = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=20, choices=StepStatus.choices, default=StepStatus.RUNNING)
    attempt = models.PositiveIntegerField(default=1)
    input = models.JSONField(null=True, blank=True)
    output = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    # Tool calls of the attempt that finished the step; a recovery is a success after failures.
    tool_calls = models.PositiveIntegerField(default=0)
    tool_errors = models.PositiveIntegerField(default=0)
    tool_recoveries = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "key"], name="uniq_step_key")]
        ordering = ["run", "id"]

    def __str__(self) -> str:
        return f"{self.key} ({self.status})"


class LedgerEntry(models.Model):
    """A completed model call or tool call inside a step attempt.

    Keyed by (run, step key, attempt, index): on resume the engine replays these instead
    of calling the model or the tool again, so nothing completed is paid for twice.
    """

    class Kind(models.TextChoices):
        MODEL = "model", "Model call"
        TOOL = "tool", "Tool call"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="ledger",
                            db_index=False)  # the unique constraint below leads with run: a second index only slows every write
    step_key = models.CharField(max_length=200)
    attempt = models.PositiveIntegerField()
    index = models.PositiveIntegerField()
    kind = models.CharField(max_length=8, choices=Kind.choices)
    name = models.CharField(max_length=128, blank=True, help_text="Tool name or model.")
    request = models.JSONField(default=dict)
    result = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "step_key", "attempt", "index"], name="uniq_ledger_slot")
        ]
        ordering = ["run", "step_key", "attempt", "index"]

    def __str__(self) -> str:
        return f"{self.step_key}@{self.attempt}[{self.index}] {self.kind} {self.name}"


class RunEvent(models.Model):
    """An append-only, hash-chained record of one change in a run."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="events",
                            db_index=False)  # the unique constraint below leads with run: a second index only slows every write
    seq = models.PositiveIntegerField()
    type = models.CharField(max_length=40)
    step_key = models.CharField(max_length=200, blank=True)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField()
    prev_hash = models.CharField(max_length=64, blank=True)
    hash = models.CharField(max_length=64)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "seq"], name="uniq_event_seq")]
        ordering = ["run", "seq"]

    def __str__(self) -> str:
        return f"#{self.seq} {self.type}"


class UsageRecord(models.Model):
    """Tokens and cost of one model call."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="usage",
                             db_index=False)  # `usage_team_created` leads with team
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.CASCADE, related_name="usage")
    step_key = models.CharField(max_length=200, blank=True)
    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.SET_NULL, related_name="usage")
    provider = models.CharField(max_length=32)
    model = models.CharField(max_length=100)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal(0))
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["team", "-created_at"], name="usage_team_created")]

    def __str__(self) -> str:
        return f"{self.provider}/{self.model} {self.input_tokens}+{self.output_tokens}"


class ModelPrice(models.Model):
    """Dollar price per million tokens; editable in the admin. `model` may end in `*`."""

    provider = models.CharField(max_length=32)
    model = models.CharField(max_length=100)
    input_per_mtok = models.DecimalField(max_digits=10, decimal_places=4)
    output_per_mtok = models.DecimalField(max_digits=10, decimal_places=4)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["provider", "model"], name="uniq_model_price")]
        ordering = ["provider", "model"]

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"

    @classmethod
    def lookup(cls, provider: str, model: str) -> ModelPrice | None:
        """The exact price row, else the longest matching `prefix*` row."""
        rows = list(cls.objects.filter(Q(provider=provider) & (Q(model=model) | Q(model__endswith="*"))))
        return cls.pick(rows, provider, model)

    @classmethod
    def lookup_many(cls, wanted: Iterable[tuple[str, str]]) -> dict[tuple[str, str], ModelPrice | None]:
        """`lookup` for each (provider, model), in one query."""
        wanted = set(wanted)
        if not wanted:
            return {}
        models_ = {model for _, model in wanted}
        rows = list(cls.objects.filter(Q(provider__in={provider for provider, _ in wanted})
                                       & (Q(model__in=models_) | Q(model__endswith="*"))).order_by())
        return {(provider, model): cls.pick(rows, provider, model) for provider, model in wanted}

    @staticmethod
    def pick(rows: Iterable[ModelPrice], provider: str, model: str) -> ModelPrice | None:
        """Among price rows, the one for (provider, model): exact, else the longest matching `prefix*`."""
        rows = [r for r in rows if r.provider == provider]
        exact = [r for r in rows if r.model == model]
        if exact:
            return exact[0]
        prefixed = [r for r in rows if r.model.endswith("*") and model.startswith(r.model[:-1])]
        return max(prefixed, key=lambda r: len(r.model), default=None)

    def cost(self, input_tokens: int, output_tokens: int) -> Decimal:
        return (self.input_per_mtok * input_tokens + self.output_per_mtok * output_tokens) / Decimal(1_000_000)


class ReviewReason(models.TextChoices):
    GATE = "gate", "Review gate"
    FAILURE = "failure", "Failure after retries"
    BUDGET = "budget", "Budget reached"
    GUARDRAIL = "guardrail", "Guardrail tripped"
    APPROVAL = "approval", "Tool call needs approval"


class ReviewItem(models.Model):
    """Something a human must decide before a paused run continues."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="review_items")
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="review_items")
    step_key = models.CharField(max_length=200)
    reason = models.CharField(max_length=16, choices=ReviewReason.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    context = models.JSONField(default=dict, blank=True)
    # What the reviewer decided: the output to continue with (possibly edited) or a note.
    decision = models.JSONField(null=True, blank=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    decided_at = models.DateTimeField(null=True, blank=True)
    assigned_to = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="assigned_reviews")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["team", "status", "-created_at"], name="review_team_status")]

    def __str__(self) -> str:
        return f"{self.get_reason_display()} on {self.step_key}"


class LimitScope(models.TextChoices):
    TEAM = "team", "Team"
    AGENT = "agent", "Agent"
    PIPELINE = "pipeline", "Pipeline"
    API_KEY = "api_key", "API key"
    USER = "user", "User"


class LimitKind(models.TextChoices):
    REQUESTS_PER_MINUTE = "requests_per_minute", "Requests per minute"
    CONCURRENT_RUNS = "concurrent_runs", "Concurrent runs"
    TOKENS_PER_DAY = "tokens_per_day", "Tokens per day"
    TOKENS_PER_MONTH = "tokens_per_month", "Tokens per month"
    USD_PER_DAY = "usd_per_day", "Dollars per day"
    USD_PER_MONTH = "usd_per_month", "Dollars per month"


class Limit(models.Model):
    """A rate limit or budget for a team, or one agent, pipeline, API key or user in it.

    Enforced in the two doors: requests and concurrent runs where runs start and API
    requests arrive, tokens and dollars before every model call.
    """

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="limits")
    scope = models.CharField(max_length=10, choices=LimitScope.choices, default=LimitScope.TEAM)
    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.CASCADE, related_name="limits")
    pipeline = models.ForeignKey(Pipeline, null=True, blank=True, on_delete=models.CASCADE, related_name="limits")
    api_key_id = models.BigIntegerField(null=True, blank=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="limits")
    kind = models.CharField(max_length=24, choices=LimitKind.choices)
    value = models.DecimalField(max_digits=16, decimal_places=4)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["team", "scope", "kind"]
        # One limit per (team, scope, kind, target): two concurrent creates both passed the
        # action's check, and then neither could be edited. One partial constraint per scope,
        # since the scope's target column is its only non-null one (NULLs never collide).
        constraints = [
            models.UniqueConstraint(fields=["team", "kind"], condition=models.Q(scope="team"),
                                    name="uniq_limit_team"),
            models.UniqueConstraint(fields=["team", "kind", "agent"], condition=models.Q(scope="agent"),
                                    name="uniq_limit_agent"),
            models.UniqueConstraint(fields=["team", "kind", "pipeline"], condition=models.Q(scope="pipeline"),
                                    name="uniq_limit_pipeline"),
            models.UniqueConstraint(fields=["team", "kind", "api_key_id"], condition=models.Q(scope="api_key"),
                                    name="uniq_limit_api_key"),
            models.UniqueConstraint(fields=["team", "kind", "user"], condition=models.Q(scope="user"),
                                    name="uniq_limit_user"),
        ]

    def __str__(self) -> str:
        target = {"team": "team", "agent": f"agent {self.agent_id}", "pipeline": f"pipeline {self.pipeline_id}",
                  "api_key": f"key {self.api_key_id}", "user": f"user {self.user_id}"}[self.scope]
        return f"{self.get_kind_display()} {self.value} for {target}"


class IdempotencyKey(models.Model):
    """A client's `Idempotency-Key` for starting a run: the same key and request start one run."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    caller = models.CharField(max_length=40, help_text="The credential that sent it (key or user).")
    key = models.CharField(max_length=200)
    request_hash = models.CharField(max_length=64)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "caller", "key"], name="uniq_idempotency_key")]

    def __str__(self) -> str:
        return f"{self.key} → run {self.run_id}"


class BudgetCounter(models.Model):
    """What a budget (a tokens/dollars Limit) has used in one period; dollars in micro-dollars.

    Started from the usage records of the period, then moved by reservations before model
    calls and settled to the actual usage after them.
    """

    limit = models.ForeignKey(Limit, on_delete=models.CASCADE, related_name="counters")
    window = models.BigIntegerField(help_text="Day number, or year*12+month for monthly budgets.")
    used = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["limit", "window"], name="uniq_budget_window")]

    def __str__(self) -> str:
        return f"{self.limit_id}@{self.window}: {self.used}"


class BudgetReservation(models.Model):
    """Room one model call holds in one budget counter, by the worker (lease owner) making it.

    Created in the transaction that takes the room; after the call its amount becomes the
    actual usage (`settled`) and the row is deleted in the transaction that records the usage.
    Whatever is left when another worker takes the run over, or the run ends, is given back.
    """

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="budget_reservations")
    lease_owner = models.CharField(max_length=100)
    limit = models.ForeignKey(Limit, on_delete=models.CASCADE, related_name="reservations")
    window = models.BigIntegerField()
    amount = models.BigIntegerField(help_text="Tokens, or micro-dollars for dollar budgets.")
    settled = models.BooleanField(default=False, help_text="The amount is the call's actual usage.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["run", "lease_owner"], name="reservation_run_owner")]

    def __str__(self) -> str:
        return f"run {self.run_id} holds {self.amount} of limit {self.limit_id}@{self.window}"


class Webhook(models.Model):
    """POSTs a pipeline's run events (finished, review needed) to a URL, signed with HMAC-SHA256."""

    EVENTS = ("run.succeeded", "run.failed", "run.cancelled", "review.needed")

    pipeline = models.ForeignKey(Pipeline, on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=500)
    secret_encrypted = models.TextField()
    # After a rotation the previous secret signs too, until `previous_secret_until`, so
    # receivers can switch without rejecting a delivery (`orchestrator.webhooks.do_rotate_secret`).
    previous_secret_encrypted = models.TextField(blank=True, default="")
    previous_secret_until = models.DateTimeField(null=True, blank=True)
    events = models.JSONField(default=list, help_text="Subset of run.succeeded, run.failed, run.cancelled, review.needed.")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.pipeline} → {self.url}"

    @property
    def secret(self) -> str:
        from mcpgateway.crypto import decrypt

        return decrypt(self.secret_encrypted)

    def signing_secrets(self, now: datetime | None = None) -> list[str]:
        """The secrets a delivery is signed with now: the current one, then the previous one
        while its overlap lasts."""
        from mcpgateway.crypto import decrypt

        found = [self.secret]
        now = now or timezone.now()
        if self.previous_secret_encrypted and self.previous_secret_until and self.previous_secret_until > now:
            found.append(decrypt(self.previous_secret_encrypted))
        return found


class WebhookDelivery(models.Model):
    """One event for one webhook, retried with backoff until delivered or given up."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=40)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    last_error = models.TextField(blank=True)
    response_status = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="webhook_due")]

    def __str__(self) -> str:
        return f"{self.event} → {self.webhook_id} ({self.status})"


class Schedule(models.Model):
    """Start a pipeline's run on a cron schedule (celery beat, database-backed schedule)."""

    pipeline = models.ForeignKey(Pipeline, on_delete=models.CASCADE, related_name="schedules")
    version = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: the latest version at each start.")
    cron = models.CharField(max_length=100, help_text="minute hour day-of-month month day-of-week, e.g. `0 7 * * 1-5`")
    timezone = models.CharField(max_length=64, default="UTC")
    input = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    skip_if_running = models.BooleanField(default=True, help_text="Do not start while the previous scheduled run is active.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    periodic_task = models.OneToOneField("django_celery_beat.PeriodicTask", null=True, blank=True,
                                         on_delete=models.SET_NULL, related_name="+")
    last_run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    last_error = models.TextField(blank=True, help_text="Why the last time it fired started no run (empty once one starts).")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.pipeline} at `{self.cron}`"


# --- evaluation ------------------------------------------------------------------------------


class EvalSuite(models.Model):
    """Cases for one agent or one pipeline version, with an optional judge agent for rubrics."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="eval_suites")
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=100)
    description = models.TextField(blank=True)
    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.CASCADE, related_name="eval_suites")
    pipeline_version = models.ForeignKey(PipelineVersion, null=True, blank=True, on_delete=models.CASCADE,
                                         related_name="eval_suites")
    judge_agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.SET_NULL, related_name="judged_suites")
    concurrency = models.PositiveSmallIntegerField(default=4)
    # Tools the agent under test needs at least (the least-privilege defence grants only these).
    least_privilege_tools = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "slug"], name="uniq_eval_suite_slug"),
            models.CheckConstraint(condition=Q(agent__isnull=True) ^ Q(pipeline_version__isnull=True),
                                   name="eval_suite_one_target"),
        ]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class EvalCaseQuerySet(models.QuerySet):
    def live(self) -> EvalCaseQuerySet:
        """The cases as the suite's file now has them: not those a re-import dropped (archived)."""
        return self.filter(archived_at__isnull=True)


class EvalCase(models.Model):
    """Input, expected outcome, expected tool calls, tags; `attack` marks a prompt-injection case.

    A case a re-import of its suite no longer has is archived, not deleted: earlier eval runs'
    results keep it (a renamed attack that got through in a baseline shows as `missing` in a
    comparison; deleting it took those results along, found by a review). `.live()` (on
    `objects` and on a suite's `cases`) leaves the archived ones out; the default manager keeps
    them, so unique checks, the admin and `dumpdata` see every row."""

    suite = models.ForeignKey(EvalSuite, on_delete=models.CASCADE, related_name="cases")
    name = models.CharField(max_length=100)
    position = models.PositiveIntegerField(default=0)
    input = models.JSONField(default=dict)
    # {"kind": "exact"|"contains"|"regex"|"json"|"rubric"|"none", "value": ..., "output": "<field>"}
    expect = models.JSONField(default=dict, blank=True)
    # {"calls": [{"name": ..., "arguments": {...subset}}], "ordered": bool}
    expected_tools = models.JSONField(default=dict, blank=True)
    # {"goal": ..., "vector": ..., "forbidden_calls": [{"name", "arguments"}], "canary": "..."}
    attack = models.JSONField(default=dict, blank=True)
    tags = models.JSONField(default=list, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)

    objects = EvalCaseQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["suite", "name"], name="uniq_eval_case_name")]
        ordering = ["suite", "position", "id"]

    def __str__(self) -> str:
        return self.name


class EvalRunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    FINISHED = "finished", "Finished"
    FAILED = "failed", "Failed"


class EvalRun(models.Model):
    """One execution of a suite: a result per case and the metrics computed from their traces."""

    suite = models.ForeignKey(EvalSuite, on_delete=models.CASCADE, related_name="eval_runs")
    status = models.CharField(max_length=10, choices=EvalRunStatus.choices, default=EvalRunStatus.QUEUED)
    label = models.CharField(max_length=100, blank=True)
    # Defence overrides for the agent under test (agent suites), and "least_privilege".
    defences = models.JSONField(default=dict, blank=True)
    baseline = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    case_total = models.PositiveIntegerField(default=0)
    case_done = models.PositiveIntegerField(default=0)
    metrics = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.suite} #{self.pk}"


class EvalResult(models.Model):
    class Status(models.TextChoices):
        PASSED = "passed", "Passed"
        FAILED = "failed", "Failed"  # for an attack case: also whenever the attack got through
        ERROR = "error", "Error"
        # An attack case whose run failed before the attack could be judged: neither blocked nor through.
        INCONCLUSIVE = "inconclusive", "Inconclusive"

    eval_run = models.ForeignKey(EvalRun, on_delete=models.CASCADE, related_name="results")
    case = models.ForeignKey(EvalCase, on_delete=models.CASCADE, related_name="results")
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=12, choices=Status.choices)
    verdicts = models.JSONField(default=list, blank=True)  # [{"judge", "passed", "reason"}]
    output = models.JSONField(null=True, blank=True)
    trace = models.JSONField(default=dict, blank=True)  # the CaseTrace the metrics read
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["eval_run", "case"], name="uniq_eval_result")]
        ordering = ["eval_run", "case__position", "case_id"]

    def __str__(self) -> str:
        return f"{self.case} {self.status}"



class SigningKey(models.Model):
    """The instance's Ed25519 key for signed trace exports (generated on first use).

    The private key is stored encrypted (the gateway's secret encryption); the public key is
    served at /.well-known/agentdeck/trace-keys.json so anyone can check an exported trace.
    """

    kid = models.CharField(max_length=32, unique=True)
    public_key = models.CharField(max_length=64, help_text="Raw Ed25519 public key, base64.")
    private_key_encrypted = models.TextField()
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.kid

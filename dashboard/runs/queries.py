"""The runs list: a team's runs, filtered, newest first, paginated by keyset.

Pages are cut on the `(created_at, id)` ordering with a cursor, never with OFFSET, and
nothing counts the whole table: each page reads `size + 1` rows through the
`run_team_created` / `run_team_status_created` indexes, so page 1 and page 5,000 cost the
same with 100,000 runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from django.contrib.auth import get_user_model
from django.db.models import Prefetch, Q, QuerySet
from django.utils import timezone

from mcpgateway.whole_numbers import is_whole
from orchestrator.models import EvalResult, PipelineVersion, Run

PAGE_SIZE = 50
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ROW_FIELDS = ("id", "team_id", "pipeline_version_id", "created_by_id", "status", "created_at", "started_at",
               "finished_at", "input_tokens", "output_tokens", "cost_usd")


@dataclass(frozen=True, slots=True)
class Cursor:
    """A position in the `(created_at, id)` ordering, as it travels in a URL: `<µs since epoch>-<id>`."""

    created_at: datetime
    id: int

    @classmethod
    def of(cls, run: Run) -> Cursor:
        return cls(run.created_at, run.pk)

    @classmethod
    def decode(cls, text: str | None) -> Cursor | None:
        """The cursor in `text`, or None when it is absent or malformed."""
        if not text:
            return None
        micros, _, pk = text.partition("-")
        if not (is_whole(micros) and is_whole(pk)):
            return None
        try:
            return cls(_EPOCH + timedelta(microseconds=int(micros)), int(pk))
        except OverflowError:  # a whole number past year 9999 (a review: it was a 500)
            return None

    def encode(self) -> str:
        return f"{(self.created_at - _EPOCH) // timedelta(microseconds=1)}-{self.id}"


@dataclass(slots=True)
class RunFilters:
    """What the list is narrowed to; every field optional."""

    pipeline_id: int | None = None
    status: str = ""
    user_id: int | None = None
    date_from: date | None = None
    date_to: date | None = None
    evals: bool = False  # eval harness runs are hidden unless asked for


@dataclass(slots=True)
class RunPage:
    """One page of runs and the cursors of its neighbours (None: there is none)."""

    runs: list[Run] = field(default_factory=list)
    newer: Cursor | None = None
    older: Cursor | None = None


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())


def filtered_runs(team_id: int, filters: RunFilters) -> QuerySet[Run]:
    """The team's runs narrowed by `filters`, unordered and unpaginated."""
    runs = Run.objects.filter(team_id=team_id)
    if not filters.evals:
        runs = runs.exclude(pk__in=eval_run_ids(team_id))
        internal = list(PipelineVersion.objects.filter(pipeline__team_id=team_id, pipeline__internal=True)
                        .values_list("id", flat=True))
        if internal:
            runs = runs.exclude(pipeline_version_id__in=internal)
    if filters.status:
        runs = runs.filter(status=filters.status)
    if filters.pipeline_id is not None:
        # Version ids rather than a join: the planner keeps walking the team index in order.
        versions = list(PipelineVersion.objects.filter(pipeline_id=filters.pipeline_id).values_list("id", flat=True))
        runs = runs.filter(pipeline_version_id__in=versions)
    if filters.user_id is not None:
        runs = runs.filter(created_by_id=filters.user_id)
    if filters.date_from is not None:
        runs = runs.filter(created_at__gte=_day_start(filters.date_from))
    if filters.date_to is not None:
        runs = runs.filter(created_at__lt=_day_start(filters.date_to + timedelta(days=1)))
    return runs


def eval_run_ids(team_id: int) -> QuerySet[EvalResult]:
    """Runs an eval suite started on one of the team's own pipelines (agent suites run on
    internal pipelines, excluded by version)."""
    return EvalResult.objects.filter(eval_run__suite__team_id=team_id, run_id__isnull=False).values("run_id")


def _older_than(cursor: Cursor) -> Q:
    # The `lte` bound lets the index range-scan; the OR breaks ties on id.
    return Q(created_at__lte=cursor.created_at) & (Q(created_at__lt=cursor.created_at) | Q(id__lt=cursor.id))


def _newer_than(cursor: Cursor) -> Q:
    return Q(created_at__gte=cursor.created_at) & (Q(created_at__gt=cursor.created_at) | Q(id__gt=cursor.id))


def runs_page(team_id: int, filters: RunFilters, before: Cursor | None = None, after: Cursor | None = None,
              size: int | None = None) -> RunPage:
    """A page of runs, newest first: the first page, the one `before` a cursor (older runs),
    or the one `after` a cursor (newer runs)."""
    size = size or PAGE_SIZE
    # One table in the query (the rows' pipelines and users are fetched for the page afterwards):
    # with joins in it, SQLite may drive the query from a filter's foreign key and sort every
    # match instead of walking the team's index in order.
    runs = filtered_runs(team_id, filters).only(*_ROW_FIELDS).prefetch_related(
        Prefetch("pipeline_version", PipelineVersion.objects.select_related("pipeline").only("number", "pipeline__name")),
        Prefetch("created_by", get_user_model().objects.only("username")),
    )
    if after is not None:
        rows = list(runs.filter(_newer_than(after)).order_by("created_at", "id")[: size + 1])
        if len(rows) > size:
            rows = rows[:size][::-1]
            return RunPage(rows, newer=Cursor.of(rows[0]), older=Cursor.of(rows[-1]))
        before = None  # less than a page is newer: that is the first page
    if before is not None:
        runs = runs.filter(_older_than(before))
    rows = list(runs.order_by("-created_at", "-id")[: size + 1])
    more_older = len(rows) > size
    rows = rows[:size]
    return RunPage(rows, newer=Cursor.of(rows[0]) if before is not None and rows else None,
                   older=Cursor.of(rows[-1]) if more_older else None)


"""Reads compiled once per shape (`orchestrator/runners/compiled.py`) return what their
querysets return — every field, converted the same way, with `select_related`'s objects
already in place — on whichever database the suite runs (SQLite, PostgreSQL); a shape whose
values cannot be placed by position, and an empty list, go through the ORM."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import F, Model, Q
from django.test.utils import CaptureQueriesContext

from orchestrator.models import Agent, ModelPrice, Run, StepRun
from orchestrator.runners import claims
from orchestrator.runners.compiled import CompiledRead
from tests.conftest import pipeline, scripted, start

pytestmark = pytest.mark.django_db(transaction=True)


def fields(obj: Model) -> dict[str, object]:
    return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}


def runs_read() -> CompiledRead:
    return CompiledRead("test: runs", lambda ids: Run.objects.select_related("pipeline_version__pipeline").filter(
        pk__in=ids).order_by("pk"))


def test_a_compiled_read_returns_what_its_queryset_returns_for_every_shape(team):
    scripted(team, "w", {"text": "ok"})
    pipe = pipeline(team, {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "go"}]})
    runs = [start(pipe, {"topic": f"t{i}"}) for i in range(5)]
    Run.objects.filter(pk=runs[1].pk).update(cost_usd=Decimal("1.234567"), input_tokens=12)
    read = runs_read()
    for ids in ([runs[0].pk], [runs[1].pk, runs[3].pk], [r.pk for r in runs], [runs[2].pk], [runs[4].pk, runs[0].pk]):
        ids = sorted(ids)
        expected = list(Run.objects.select_related("pipeline_version__pipeline").filter(pk__in=ids).order_by("pk"))
        got = read.models(ids)
        assert [fields(r) for r in got] == [fields(r) for r in expected]
        with CaptureQueriesContext(connection) as queries:  # the related objects came with the rows
            assert [fields(r.pipeline_version) for r in got] == [fields(r.pipeline_version) for r in expected]
            assert [r.pipeline_version.pipeline.slug for r in got] == [r.pipeline_version.pipeline.slug for r in expected]
        assert len(queries) == 0
    assert read.compiled == 3 and read.fallbacks == 0  # shapes of 1, 2 and 5 ids: each compiled once
    assert read.models([]) == [] and read.fallbacks == 1
    # A second run of a shape sends the same SQL with the new values, and nothing else.
    with CaptureQueriesContext(connection) as queries:
        assert [r.pk for r in read.models([runs[3].pk])] == [runs[3].pk]
    assert len(queries) == 1 and str(runs[3].pk) in queries[0]["sql"]


def test_values_lists_and_several_list_arguments_match_the_orm(team):
    scripted(team, "w", {"text": "ok"})
    scripted(team, "v", {"text": "ok"})
    pipe = pipeline(team, {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "go"}]})
    with_step, without = start(pipe), start(pipe)
    StepRun.objects.create(run=with_step, key="a", step_id="a", kind="agent", status="succeeded")
    steps = CompiledRead("test: steps", lambda ids: StepRun.objects.filter(run_id__in=ids).order_by().values_list(
        "run_id", flat=True).distinct())
    assert steps.values(sorted([with_step.pk, without.pk])) == [(with_step.pk,)]
    assert steps.values([without.pk]) == []

    ModelPrice.objects.create(provider="acme", model="big-*", input_per_mtok=1, output_per_mtok=2)
    ModelPrice.objects.create(provider="acme", model="small", input_per_mtok=3, output_per_mtok=4)
    ModelPrice.objects.create(provider="other", model="small", input_per_mtok=5, output_per_mtok=6)
    prices = CompiledRead("test: prices", lambda providers, models_: ModelPrice.objects.filter(
        Q(provider__in=providers) & (Q(model__in=models_) | Q(model__endswith="*"))).order_by("pk"))
    for providers, models_ in ((["acme"], ["small"]), (["acme", "other"], ["big-1", "small"]), (["nobody"], ["x"])):
        expected = ModelPrice.objects.filter(Q(provider__in=providers) & (Q(model__in=models_) | Q(model__endswith="*")))
        assert [fields(p) for p in prices.models(providers, models_)] == [fields(p) for p in expected.order_by("pk")]
    assert prices.fallbacks == 0

    agents = CompiledRead("test: agents", lambda teams: Agent.objects.filter(team_id__in=teams).order_by("pk"))
    assert [fields(a) for a in agents.models([team.pk])] == [fields(a) for a in Agent.objects.filter(team=team).order_by("pk")]


def test_a_shape_whose_values_cannot_be_placed_as_they_are_goes_through_the_orm(team, caplog):
    scripted(team, "w", {"text": "ok"})
    scripted(team, "a_b%", {"text": "ok"})
    scripted(team, "axbz", {"text": "ok"})
    pipe = pipeline(team, {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "go"}]})
    run = start(pipe)
    # The ids appear twice among the parameters: they cannot be placed by position.
    twice = CompiledRead("test: twice", lambda ids: Run.objects.filter(Q(pk__in=ids) | Q(pipeline_version_id__in=ids)).order_by())
    assert [r.pk for r in twice.models([run.pk])] == [run.pk]
    assert twice.compiled == 0 and twice.fallbacks == 1
    assert "runs through the ORM" in caplog.text
    # A lookup that may rewrite its value (SQLite's iexact escapes it for LIKE; PostgreSQL's
    # compares UPPER()s and sends it as given): right either way, reused only where unchanged.
    like = CompiledRead("test: like", lambda names: Agent.objects.filter(name__iexact=names[0]).order_by("pk"))
    assert [a.name for a in like.models(["A_B%"])] == ["a_b%"]  # not "axbz"
    assert [a.name for a in like.models(["AXBZ"])] == ["axbz"]
    assert like.compiled == (0 if connection.vendor == "sqlite" else 1)
    # None in a list: the ORM drops it (here: every other run, not none at all).
    other = start(pipe)
    negated = CompiledRead("test: negated", lambda ids: Run.objects.filter(~Q(pk__in=ids)).order_by("pk"))
    assert [r.pk for r in negated.models([run.pk, None])] == [other.pk]
    assert negated.fallbacks == 1
    # Extra select columns (ordered by a column that is not selected), and annotations.
    extra = CompiledRead("test: extra", lambda ids: StepRun.objects.filter(run_id__in=ids).values_list(
        "run_id", flat=True).distinct().order_by("-pk"))
    assert extra.values([run.pk]) == [] and extra.fallbacks == 1
    annotated = CompiledRead("test: annotated", lambda ids: Run.objects.filter(pk__in=ids).annotate(
        doubled=F("input_tokens") * 2).order_by())
    assert [r.doubled for r in annotated.models([run.pk])] == [0] and annotated.fallbacks == 1


def test_each_thread_compiles_its_own_and_the_claim_uses_them(team):
    scripted(team, "w", {"text": "ok"})
    pipe = pipeline(team, {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "go"}]})
    run, other = start(pipe), start(pipe)
    read = runs_read()
    assert [r.pk for r in read.models([run.pk])] == [run.pk]
    found: list[int] = []

    def elsewhere() -> None:
        try:
            found.extend(r.pk for r in read.models([other.pk]))
        finally:
            connection.close()

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join()
    assert found == [other.pk] and read.compiled == 2

    if connection.vendor == "postgresql":  # claimed and read in one query, by run ids
        reads = (claims._RUNS, claims._WITH_STEPS, claims._AGENTS_OF_RUNS, claims._LIMITS_OF_RUNS, claims._PRICES_OF_RUNS)
    else:
        reads = (claims._RUNS, claims._WITH_STEPS, claims._AGENTS, claims._LIMITS, claims._PRICES)
    before = [(r.executions, r.fallbacks) for r in reads]
    outcome = claims.claim_runs([(run.pk, "me:1")])[0]
    assert isinstance(outcome, claims.Prepared) and outcome.run.pk == run.pk
    assert outcome.run.pipeline_version.pipeline_id == pipe.pk and "w" in outcome.agents
    after = [(r.executions, r.fallbacks) for r in reads]
    assert all(a[0] == b[0] + 1 and a[1] == b[1] for a, b in zip(after, before, strict=True)), (before, after)


def test_a_statement_sent_by_its_caller_gives_what_the_read_gives(team):
    """`statement` hands the SQL and values to a caller that sends them itself (the claim's one
    query); `models_from` and `values_from` make of the rows what `models` and `values` return."""
    scripted(team, "w", {"text": "ok"})
    pipe = pipeline(team, {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "go"}]})
    runs = [start(pipe) for _ in range(3)]
    StepRun.objects.create(run=runs[1], key="a", step_id="a", kind="agent", status="succeeded")
    ids = sorted(r.pk for r in runs)

    for read, convert in ((runs_read(), "models"), (claims._WITH_STEPS, "values"), (claims._AGENTS_OF_RUNS, "models")):
        expected = getattr(read, convert)(ids)
        sql, params = read.statement(ids)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            fetched = cursor.fetchall()
        got = getattr(read, f"{convert}_from")(fetched, ids)
        if convert == "models":
            assert [fields(m) for m in got] == [fields(m) for m in expected] and got
        else:
            assert got == expected == [(runs[1].pk,)]
    assert runs_read().statement([]) is None  # an empty list: the ORM's (no statement to send)

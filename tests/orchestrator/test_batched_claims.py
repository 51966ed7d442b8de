"""Runs that start together are claimed in one statement and loaded in one transaction, with
every guarantee of one run's claim: a run another live worker holds is not taken, a run asked
for twice is taken once, a run whose holder's lease ran out is taken over."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from config import db_writer
from mcpgateway.inprocess import InProcessToolbox
from orchestrator import lease_clock
from orchestrator.execution import execute_run
from orchestrator.models import Run
from orchestrator.runners import claims
from orchestrator.runners.lease_keeper import KeptRunStore, LeaseKeeper
from orchestrator.store import DjangoRunStore
from tests.conftest import pipeline, scripted, start

pytestmark = pytest.mark.django_db(transaction=True)

ELSEWHERE = "elsewhere:4242:aa"  # a live worker on another host: only its lease counts


def _one_step(team, delay_ms: int = 0):
    scripted(team, "w", {"text": "ok", "delay_ms": delay_ms})
    return pipeline(team, {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "go"}]})


def test_it_claims_and_loads_many_runs_in_a_constant_number_of_statements(team):
    pipe = _one_step(team)
    few = [start(pipe).pk for _ in range(2)]
    many = [start(pipe).pk for _ in range(30)]

    def statements(run_ids: list[int]) -> int:
        lease_clock.now()  # (its offset, measured now if due, is not the claim's statement)
        with CaptureQueriesContext(connection) as queries:
            outcomes = claims.claim_runs([(run_id, f"me:{run_id}") for run_id in run_ids])
        assert all(isinstance(o, claims.Prepared) and o.load is not None for o in outcomes), outcomes
        return len(queries)

    assert statements(many) == statements(few) <= 10
    if connection.vendor == "postgresql":  # the claim and every read in one multi-statement query
        assert statements([start(pipe).pk for _ in range(3)]) == 1
    owners = dict(Run.objects.filter(pk__in=many).values_list("pk", "lease_owner"))
    assert owners == {run_id: f"me:{run_id}" for run_id in many}, "each run has its own lease owner"
    assert set(Run.objects.filter(pk__in=many).values_list("status", flat=True)) == {"running"}


def test_it_does_not_take_a_run_another_live_worker_holds(team):
    pipe = _one_step(team)
    held, free = start(pipe), start(pipe)
    until = timezone.now() + timedelta(seconds=60)
    Run.objects.filter(pk=held.pk).update(status="running", lease_owner=ELSEWHERE, lease_until=until)

    outcomes = claims.claim_runs([(held.pk, "me:1"), (free.pk, "me:2")])

    assert outcomes[0] is None and isinstance(outcomes[1], claims.Prepared)
    held.refresh_from_db()
    assert (held.lease_owner, held.lease_until) == (ELSEWHERE, until)


def test_a_run_asked_for_twice_in_one_batch_is_taken_once(team):
    run = start(_one_step(team))

    first, second = claims.claim_runs([(run.pk, "me:1"), (run.pk, "me:2")])

    assert isinstance(first, claims.Prepared) and second is None
    assert Run.objects.get(pk=run.pk).lease_owner == "me:1"


def test_it_takes_over_a_run_whose_lease_ran_out_beside_fresh_ones(team):
    pipe = _one_step(team)
    expired, fresh = start(pipe), start(pipe)
    Run.objects.filter(pk=expired.pk).update(status="running", lease_owner=ELSEWHERE,
                                             lease_until=timezone.now() - timedelta(seconds=1))

    outcomes = claims.claim_runs([(expired.pk, "me:1"), (fresh.pk, "me:2")])

    assert all(isinstance(o, claims.Prepared) for o in outcomes)
    assert dict(Run.objects.filter(pk__in=[expired.pk, fresh.pk]).values_list("pk", "lease_owner")) == {
        expired.pk: "me:1", fresh.pk: "me:2"}


def test_a_cancelled_run_is_not_claimed(team):
    run = start(_one_step(team))
    Run.objects.filter(pk=run.pk).update(cancel_requested=True)

    assert claims.claim_runs([(run.pk, "me:1")]) == [None]
    assert Run.objects.get(pk=run.pk).lease_owner == ""


def test_runs_starting_together_share_their_claims(team):
    pipe = _one_step(team)
    runs = [start(pipe).pk for _ in range(24)]

    async def together() -> tuple[list, int]:
        outcomes = await asyncio.gather(*(execute_run(r, toolbox=InProcessToolbox()) for r in runs))
        return outcomes, claims.coalescer().batches

    outcomes, batches = async_to_sync(together)()

    assert [o.status for o in outcomes] == ["succeeded"] * 24
    assert batches <= 3, f"24 runs started together took {batches} claim batches"


def test_claims_made_while_a_batch_is_being_taken_wait_and_go_together(team):
    """A burst arriving slower than a batching window used to make a batch per claim, each
    queued on the writer threads behind the others; now the claims made while a batch is in
    flight wait for it and go as one batch. Here the writer threads are held busy while one
    claim's batch waits for them, and eleven more claims arrive 10 ms apart."""
    pipe = _one_step(team)
    runs = [start(pipe).pk for _ in range(12)]

    async def burst() -> tuple[list, int]:
        loop = asyncio.get_running_loop()
        gate = threading.Event()
        executor = db_writer._executor()
        busy = [loop.run_in_executor(executor, gate.wait, 10) for _ in range(executor._max_workers)]
        coalescer = claims.ClaimCoalescer()
        first = coalescer.claim(runs[0], "me:1")
        await asyncio.sleep(0.02)  # its batch went to the (busy) writer
        later = []
        for run_id in runs[1:]:
            later.append(coalescer.claim(run_id, "me:1"))
            await asyncio.sleep(0.01)
        gate.set()
        await asyncio.gather(*busy)
        return await asyncio.gather(first, *later), coalescer.batches

    prepared, batches = async_to_sync(burst)()

    assert [p.run.pk for p in prepared] == runs
    assert batches == 2, f"12 claims took {batches} batches"
    assert set(Run.objects.filter(pk__in=runs).values_list("lease_owner", flat=True)) == {"me:1"}


def test_a_batch_past_the_limit_goes_in_several_one_after_another(team):
    pipe = _one_step(team)
    runs = [start(pipe).pk for _ in range(7)]

    async def together() -> tuple[list, int]:
        coalescer = claims.ClaimCoalescer(max_batch=3)
        return await asyncio.gather(*(coalescer.claim(r, "me:1") for r in runs)), coalescer.batches

    prepared, batches = async_to_sync(together)()

    assert [p.run.pk for p in prepared] == runs
    assert batches == 3


def test_a_preloaded_store_starts_as_a_loaded_one(team):
    run = start(_one_step(team))
    prepared = claims.claim_runs([(run.pk, "me:1")])[0]
    assert isinstance(prepared, claims.Prepared) and prepared.load is not None

    async def both() -> tuple[dict, dict]:
        loaded = DjangoRunStore(run.pk, lease_owner="me:1")
        preloaded = KeptRunStore(run.pk, lease_owner="me:1", keeper=LeaseKeeper(), preloaded=prepared.load)
        states = [await loaded.load(), await preloaded.load()]
        for state in states:  # the same amount, however the database spells it
            state.cost_usd = Decimal(state.cost_usd)
        assert states[0] == states[1]
        return _loaded_fields(loaded), _loaded_fields(preloaded)

    loaded, preloaded = async_to_sync(both)()
    assert preloaded == loaded


def _loaded_fields(store: DjangoRunStore) -> dict:
    """What `load` sets on a store, comparable across two stores of one run."""
    fields = {}
    for name in dir(store):
        value = getattr(store, name, None)
        if name.startswith("__") or callable(value) or name in ("keeper", "_preloaded", "_lock"):
            continue
        if name == "_metrics":
            value = value.pipeline if value is not None else None
        elif name == "_redactor":
            value = value is not None
        fields[name] = value
    return fields


def test_claims_on_a_loop_with_no_batch_in_flight_go_at_once(team):
    """A run starting alone does not wait for company that is not coming, nor does one that
    starts right after another's claim was taken (runs started one after another each waited
    out a 5 ms batching window, for nothing). The coalescer arms no timer: every claim goes in
    the loop turn it was made in, or when the batch in flight ends."""
    pipe = _one_step(team)
    runs = [start(pipe) for _ in range(3)]

    async def one_after_another() -> tuple[list[claims.Prepared | None], int]:
        loop = asyncio.get_running_loop()
        coalescer = claims.ClaimCoalescer()

        call_at = loop.call_at

        def no_timer_of_the_coalescer(when, callback, *args, **kwargs):
            assert getattr(callback, "__self__", None) is not coalescer, "the claim coalescer armed a timer"
            return call_at(when, callback, *args, **kwargs)

        loop.call_at = no_timer_of_the_coalescer  # (the instance's: this loop only; `call_later` goes through it)
        prepared = []
        for run in runs:
            prepared.append(await asyncio.wait_for(coalescer.claim(run.pk, "me:1"), timeout=10))
        return prepared, coalescer.batches

    prepared, batches = async_to_sync(one_after_another)()

    assert [p.run.pk for p in prepared] == [run.pk for run in runs]
    assert batches == 3


def test_a_batch_reads_the_budgets_rates_and_prices_one_run_would(team):
    """The batch reads every team's limits and the models' prices once; each run still gets
    exactly what the single-run reads give it (`budgets_for_run`, `ModelPrice.lookup`)."""
    from orchestrator.budgets import budgets_for_run
    from orchestrator.models import Limit, ModelPrice

    a, b = scripted(team, "a", {"text": "ok"}), scripted(team, "b", {"text": "ok"})
    b.model = "other-2"
    b.save()
    first = pipeline(team, {"steps": [{"kind": "agent", "id": "x", "agent": "a", "prompt": "go"},
                                      {"kind": "agent", "id": "y", "agent": "b", "prompt": "go"}]}, name="first")
    second = pipeline(team, {"steps": [{"kind": "agent", "id": "x", "agent": "a", "prompt": "go"}]}, name="second")
    Limit.objects.create(team=team, scope="team", kind="tokens_per_day", value=Decimal(1000))
    Limit.objects.create(team=team, scope="agent", agent=b, kind="usd_per_month", value=Decimal("2.5"))
    Limit.objects.create(team=team, scope="pipeline", pipeline=first, kind="tokens_per_month", value=Decimal(50))
    Limit.objects.create(team=team, scope="pipeline", pipeline=second, kind="usd_per_day", value=Decimal(1))
    Limit.objects.create(team=team, scope="agent", agent=a, kind="requests_per_minute", value=Decimal(7))
    Limit.objects.create(team=team, scope="team", kind="requests_per_minute", value=Decimal(99))
    ModelPrice.objects.create(provider="scripted", model="scripted*", input_per_mtok=1, output_per_mtok=2)
    ModelPrice.objects.create(provider="scripted", model="other-2", input_per_mtok=3, output_per_mtok=4)
    runs = [start(first), start(second)]

    outcomes = claims.claim_runs([(run.pk, f"me:{run.pk}") for run in runs])

    for run, prepared in zip(runs, outcomes, strict=True):
        assert isinstance(prepared, claims.Prepared)
        assert prepared.budgets == budgets_for_run(team.pk, run.pipeline_version.pipeline_id)
        assert prepared.agent_rates == {"a": 7}
        for (provider, model), price in prepared.prices.items():
            assert price == ModelPrice.lookup(provider, model)
    assert {k: v.model for k, v in outcomes[0].prices.items()} == {
        (a.provider, a.model): "scripted*", (b.provider, "other-2"): "other-2"}
    assert [{b.pipeline_id for b in p.budgets if b.scope == "pipeline"} for p in outcomes] == [{first.pk}, {second.pk}]
    assert [len(p.budgets) for p in outcomes] == [3, 3]  # the team's, agent b's, and the run's pipeline's


def test_prices_looked_up_together_are_those_looked_up_one_by_one(db):
    from orchestrator.models import ModelPrice

    for provider, model in (("p", "m-1"), ("p", "m*"), ("p", "m-1-long*"), ("q", "m-1"), ("q", "x*")):
        ModelPrice.objects.create(provider=provider, model=model, input_per_mtok=1, output_per_mtok=1)
    wanted = [("p", "m-1"), ("p", "m-2"), ("p", "m-1-long-3"), ("q", "m-1"), ("q", "m-2"), ("q", "xy"), ("r", "m-1")]

    together = ModelPrice.lookup_many(wanted)

    assert together == {pair: ModelPrice.lookup(*pair) for pair in wanted}
    assert {pair: (p.provider, p.model) if p else None for pair, p in together.items()} == {
        ("p", "m-1"): ("p", "m-1"), ("p", "m-2"): ("p", "m*"), ("p", "m-1-long-3"): ("p", "m-1-long*"),
        ("q", "m-1"): ("q", "m-1"), ("q", "m-2"): None, ("q", "xy"): ("q", "x*"), ("r", "m-1"): None}


def test_the_keeper_renews_only_leases_its_runs_still_hold_and_reads_every_runs_flags(team, settings):
    from orchestrator.runners.lease_keeper import _look

    pipe = _one_step(team)
    mine, taken, idle = start(pipe), start(pipe), start(pipe)
    old = timezone.now() - timedelta(seconds=5)
    Run.objects.filter(pk=mine.pk).update(status="running", lease_owner="me:1", lease_until=old)
    Run.objects.filter(pk=taken.pk).update(status="running", lease_owner=ELSEWHERE, lease_until=old, cancel_requested=True)
    Run.objects.filter(pk=idle.pk).update(status="running", lease_owner="me:3", lease_until=old)

    lease_clock.now()  # (its offset, measured now if due, is not the keeper's statement)
    with CaptureQueriesContext(connection) as queries:
        seen, renewed = _look({mine.pk: "me:1", taken.pk: "me:2", idle.pk: "me:3"}, {mine.pk: "me:1", taken.pk: "me:2"})

    assert renewed == [mine.pk]
    assert seen == {mine.pk: (False, "me:1"), taken.pk: (True, ELSEWHERE), idle.pk: (False, "me:3")}
    leases = dict(Run.objects.values_list("pk", "lease_until"))
    assert leases[mine.pk] > timezone.now() + timedelta(seconds=settings.RUN_LEASE_S - 5)
    assert leases[taken.pk] == old and leases[idle.pk] == old, "not due, or held by another process"
    reads = [q["sql"] for q in queries if q["sql"].startswith("SELECT")]
    assert len(reads) == 2
    if connection.vendor == "postgresql":  # the ids as one array, not a placeholder each
        assert all("= ANY(" in sql and " IN (" not in sql for sql in reads)


def test_runs_of_one_version_share_its_spec_parsed_once(team):
    pipe = _one_step(team)
    first, second = start(pipe), start(pipe)
    version = first.pipeline_version

    prepared = claims.claim_runs([(first.pk, "me:1"), (second.pk, "me:2")])

    assert prepared[0].spec is prepared[1].spec
    assert claims._specs[version.pk, version.created_at] is prepared[0].spec
    # An edit makes a new version, which gets its own spec.
    from orchestrator.actions.pipelines import do_save_pipeline_version

    do_save_pipeline_version(pipe, {"steps": [{"kind": "agent", "id": "b", "agent": "w", "prompt": "again"}]})
    third = start(pipe)
    assert third.pipeline_version_id != version.pk
    (edited,) = claims.claim_runs([(third.pk, "me:3")])
    assert [step.id for step in edited.spec.steps] == ["b"]
    assert [step.id for step in prepared[0].spec.steps] == ["a"]


def test_runs_of_two_teams_claimed_together_each_get_their_own_teams_rows(team, owner):
    """The one-query claim reads agents, limits and prices through the runs' teams: each run gets
    its own team's agent of that name, budgets and rates, never the other team's."""
    from orchestrator.actions import do_create_team
    from orchestrator.budgets import budgets_for_run
    from orchestrator.models import Limit, ModelPrice

    other = do_create_team("Other", owner)
    ours_agent, theirs_agent = scripted(team, "w", {"text": "ours"}), scripted(other, "w", {"text": "theirs"})
    theirs_agent.model = "theirs-1"
    theirs_agent.save()
    spec = {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "go"}]}
    ours, theirs = start(pipeline(team, spec)), start(pipeline(other, spec))
    Limit.objects.create(team=team, scope="team", kind="tokens_per_day", value=Decimal(1000))
    Limit.objects.create(team=other, scope="agent", agent=theirs_agent, kind="requests_per_minute", value=Decimal(3))
    ModelPrice.objects.create(provider="scripted", model="theirs-1", input_per_mtok=5, output_per_mtok=6)
    held = start(pipeline(other, spec, name="held"))
    Run.objects.filter(pk=held.pk).update(status="running", lease_owner=ELSEWHERE,
                                          lease_until=timezone.now() + timedelta(seconds=60))

    outcomes = claims.claim_runs([(ours.pk, "me:1"), (held.pk, "me:2"), (theirs.pk, "me:3")])

    first, none, second = outcomes
    assert none is None and Run.objects.get(pk=held.pk).lease_owner == ELSEWHERE
    assert isinstance(first, claims.Prepared) and isinstance(second, claims.Prepared)
    assert first.agents["w"].model == ours_agent.model and first.agent_ids == {"w": ours_agent.pk}
    assert second.agents["w"].model == "theirs-1" and second.agent_ids == {"w": theirs_agent.pk}
    assert first.load.agents == {"w": ours_agent.pk} and second.load.agents == {"w": theirs_agent.pk}
    assert first.budgets == budgets_for_run(team.pk, ours.pipeline_version.pipeline_id) and len(first.budgets) == 1
    assert second.budgets == [] and (first.agent_rates, second.agent_rates) == ({}, {"w": 3})
    assert second.prices == {("scripted", "theirs-1"): ModelPrice.objects.get(model="theirs-1")}
    assert first.prices == {(ours_agent.provider, ours_agent.model): ModelPrice.lookup(ours_agent.provider, ours_agent.model)}


def test_a_claimed_run_whose_agents_are_gone_is_failed(team):
    from orchestrator.models import Agent

    run = start(_one_step(team))
    Agent.objects.filter(team=team, name="w").delete()

    assert claims.claim_runs([(run.pk, "me:1")]) == [None]
    run.refresh_from_db()
    assert run.status == "failed" and run.error == "agents not found: w" and run.finished_at is not None


def test_a_fresh_run_claimed_beside_a_held_run_with_steps_is_prepared(team):
    """A batch's reads ask by every requested run; a run the claim did not take (held elsewhere,
    with steps) must not change how the taken ones are prepared (the one-query claim once
    decided from it that no fresh run needed the redactor, and failed the fresh one)."""
    from orchestrator.models import StepRun

    pipe = _one_step(team)
    fresh, held = start(pipe), start(pipe)
    StepRun.objects.create(run=held, key="a", step_id="a", kind="agent", status="running")
    Run.objects.filter(pk=held.pk).update(status="running", lease_owner=ELSEWHERE,
                                          lease_until=timezone.now() + timedelta(seconds=60))

    outcomes = claims.claim_runs([(fresh.pk, "me:1"), (held.pk, "me:2")])

    assert isinstance(outcomes[0], claims.Prepared) and outcomes[0].load is not None, outcomes
    assert outcomes[1] is None


def test_a_failure_after_the_claim_committed_leaves_no_run_stranded(team, monkeypatch):
    """If preparing fails once the claim is made (on PostgreSQL the one query has committed it),
    the runs are not left held by this live process for a lease: the single path takes them."""
    run = start(_one_step(team))
    calls: list[int] = []
    real = claims.get_redactor

    def flaky(team_id=None):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the secrets store is briefly unavailable")
        return real(team_id)

    monkeypatch.setattr(claims, "get_redactor", flaky)
    outcome = claims.claim_runs([(run.pk, "me:1")])[0]

    assert isinstance(outcome, claims.Prepared) and len(calls) == 2
    run.refresh_from_db()
    assert (run.status, run.lease_owner) == ("running", "me:1") and run.lease_until > timezone.now()


def test_a_claim_whose_answer_was_lost_is_taken_by_its_own_execution(team, monkeypatch):
    """The one query committed the claim, then the connection dropped before its answer came
    back: the single path finds the run held by this very execution (owners are unique per
    execution) and goes on with it, instead of leaving it held for a lease (a review found it)."""
    from django.db import OperationalError

    if connection.vendor != "postgresql":
        pytest.skip("the claim's one query is PostgreSQL's")
    run = start(_one_step(team))
    real = claims.reads_in_one_query

    def answer_lost(statements):
        real(statements)  # the server ran it: the claim is committed
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(claims, "reads_in_one_query", answer_lost)
    outcome = claims.claim_runs([(run.pk, "me:1")])[0]

    assert isinstance(outcome, claims.Prepared) and outcome.run.pk == run.pk
    run.refresh_from_db()
    assert (run.status, run.lease_owner) == ("running", "me:1")
    assert claims.claim_runs([(run.pk, "me:2")]) == [None]  # another execution still does not get it

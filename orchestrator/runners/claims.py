"""Claiming and loading runs in batches: the runs that start on one event loop within a few
milliseconds are claimed in one statement and loaded in one transaction.

A worker process that receives hundreds of runs at once used to claim and load each on its
own: about twelve transactions per run (the claim, then the run, its agents, prices,
budgets, rate limits, and the store's load of the run, its agents and its steps), each a
round trip through the process's few pooled connections on threads that also wait for the
GIL while the event loop is busy starting runs. Five hundred runs took 8.5 s to start.

`ClaimCoalescer` hands the claims made on its loop to one writer job, `claim_runs`. A claim
on a loop where no batch is being taken goes at once (with the claims made in the same loop
turn): a run starting alone does not wait for company that is not coming. While
`CLAIM_BATCHES_IN_FLIGHT` batches are being taken, new claims wait for one of them to end and
then go together, up to `CLAIM_BATCH_MAX` (group claim, as the engine's group commit: no
timer, no added wait): a batch's cost is mostly per batch (its round trips, each waiting for
the GIL in a busy process), so under a burst the batches grow instead of queueing behind each
other on the writer threads. Measured in a worker taking 500 runs at once: with a fixed
window only, batches averaged 1.3 runs, each held a writer thread ~0.1 s, and a claim waited
~1 s for a thread — the claims themselves capped the intake at ~50 runs a second. (A 5 ms
window for claims following one another closely was dropped later: runs started one after
another, each claim after the last one's batch had ended, each waited it out for nothing.)

- the queued runs nobody ever held are claimed in one conditional `UPDATE ... RETURNING`
  (the same conditions as one run's claim: queued, no lease owner, not cancelled; each run
  gets its own owner). On PostgreSQL the rows are locked in id order with `SKIP LOCKED`, so a
  batch never waits on, or deadlocks with, a commit or another worker's claim that holds one
  of them: a skipped run takes the single path below, which waits for it as before;
- every other request (a run whose lease expired, whose holder died, that another execution
  of this batch asked for first, that a lock kept out of the batch) takes the single claim
  path, `claim_one`, exactly as before batching;
- the runs claimed are loaded together in one read transaction: the runs, their teams'
  agents, their teams' budgets and rate limits, and the prices of those agents' models (one
  query per kind of row, not per run, team or model). For a run with no steps yet, what its store would read at its first
  `load` comes along (`StoreLoad`), so the engine starts it without another round trip.

On PostgreSQL the fresh runs' claim and all of those reads go in ONE round trip
(`claim_in_one_query`): one multi-statement query that the server runs as one transaction,
the reads asking through the requested runs' rows (subqueries) since they cannot wait for the
claim's answer. A lone run's claim took ~4.3 ms in eight round trips (BEGIN, the claim, five
reads, COMMIT); it takes ~2.8 ms in one. SQLite, which has no round trips, keeps the two steps.

A failure of the batch's statements sends its runs down the single path, one by one, so a
batch never fails a run that the single path would have run.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Q, QuerySet, Value
from django.db.models.functions import Coalesce

from config.db_writer import write_job
from config.sql_rows import one_query_capable, reads_in_one_query
from mcpgateway.redaction import Redactor, get_redactor
from orchestrator import lease_clock
from orchestrator.budgets import BUDGET_KINDS, Budget, budgets_from_limits, release_run
from orchestrator.engine.ports import AgentConfig
from orchestrator.engine.spec import PipelineSpec, parse_spec
from orchestrator.models import (
    Agent,
    Limit,
    LimitKind,
    LimitScope,
    ModelPrice,
    PipelineVersion,
    Run,
    RunStatus,
    StepRun,
)
from orchestrator.runners.compiled import CompiledRead

log = logging.getLogger(__name__)

CLAIM_BATCH_MAX = 128  # claims taken in one batch at most (a full batch goes at once)
CLAIM_BATCHES_IN_FLIGHT = 1  # batches being taken at once per loop; later claims wait and go together


@dataclass(frozen=True, slots=True)
class StoreLoad:
    """What a run's store reads at its first `load` when the run has no steps yet."""

    team_id: int
    pipeline_id: int
    slug: str
    agents: dict[str, int]  # every agent of the team: name -> id
    redactor: Redactor
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal
    last_seq: int  # the run's chain head when the claim read it
    last_hash: str


@dataclass(slots=True)
class Prepared:
    """A claimed run and everything its execution needs from the database."""

    run: Run
    spec: PipelineSpec
    agents: dict[str, AgentConfig]
    prices: dict[tuple[str, str], ModelPrice | None]
    agent_ids: dict[str, int]
    budgets: list[Budget]
    agent_rates: dict[str, int]
    load: StoreLoad | None = None  # None: the store loads the run itself (it has steps)


Outcome = Prepared | BaseException | None


def claim_runs(requests: list[tuple[int, str]]) -> list[Outcome]:
    """Claim and load runs: for each `(run_id, owner)`, the prepared run, None if it is not
    runnable or another live worker holds it, or the exception its claim or load raised.

    The fresh runs are claimed and loaded in one transaction; every other request takes the
    single path (`claim_one`, then its own load), as does every request if the batch fails."""
    first: dict[int, str] = {}
    for run_id, owner in requests:
        first.setdefault(run_id, owner)
    outcomes: dict[tuple[int, str], Outcome] = {}
    try:
        loaded = claim_in_one_query(first)
        if loaded is None:
            with transaction.atomic():
                fresh = claim_fresh(first)
                loaded = prepare(sorted(fresh))
        outcomes.update(((run_id, first[run_id]), outcome) for run_id, outcome in loaded.items())
    except Exception:
        log.exception("claiming %d run(s) in one batch failed; claiming them one by one", len(first))
        outcomes.clear()
    for run_id, owner in requests:
        if (run_id, owner) in outcomes:
            continue
        try:
            outcomes[run_id, owner] = prepare([run_id])[run_id] if claim_one(run_id, owner) else None
        except Exception as exc:
            outcomes[run_id, owner] = exc
    # A request made twice (the same run for the same owner) gets the run once: two executions
    # must never share one lease.
    seen: set[tuple[int, str]] = set()
    answers: list[Outcome] = []
    for request in requests:
        answers.append(None if request in seen else outcomes[request])
        seen.add(request)
    return answers


def claim_fresh(owners: dict[int, str]) -> set[int]:
    """Claim, in one statement, those of the runs that are queued and were never held (the
    common case: nothing of a previous holder to give back). Returns the ids claimed."""
    if not owners:
        return set()
    sql, params = _claim_fresh_statement(owners)
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {row[0] for row in cursor.fetchall()}


def claim_in_one_query(owners: dict[int, str]) -> dict[int, Prepared | BaseException | None] | None:
    """On PostgreSQL, the fresh runs' claim (`claim_fresh`'s statement) and everything `prepare`
    reads, in ONE round trip: one multi-statement query, which the server runs as one
    transaction and commits at its end. Returns what `claim_fresh` then `prepare` would
    (by claimed run id), or None where this cannot be done (SQLite, inside a transaction, a read
    that runs through the ORM): the caller takes the two steps then.

    The reads cannot wait for the claim's answer, so they ask by the requested ids: the teams,
    agents, limits and prices come through the runs' rows in subqueries, and whatever they
    return for a run the claim did not take is left unused. Each read runs after the claim in
    the same transaction, so it sees the runs as claimed."""
    if not owners or not one_query_capable() or connection.in_atomic_block:
        return None
    ids = sorted(owners)
    reads = [_RUNS, _WITH_STEPS, _AGENTS_OF_RUNS, _LIMITS_OF_RUNS, _PRICES_OF_RUNS]
    statements = [read.statement(ids) for read in reads]
    if any(statement is None for statement in statements):
        return None
    claimed, runs, with_steps, agents, limits, prices = reads_in_one_query(
        [_claim_fresh_statement(owners), *statements])  # type: ignore[list-item]
    taken = {row[0] for row in claimed}
    if not taken:
        return {}
    try:
        runs_read: list[Run] = [run for run in _RUNS.models_from(runs, ids) if run.pk in taken]
        teams = {run.team_id for run in runs_read}
        prepared, failed = _assemble(
            runs_read, {run_id for (run_id,) in _WITH_STEPS.values_from(with_steps, ids)} & taken,
            [agent for agent in _AGENTS_OF_RUNS.models_from(agents, ids) if agent.team_id in teams],
            [limit for limit in _LIMITS_OF_RUNS.models_from(limits, ids) if limit.team_id in teams],
            _PRICES_OF_RUNS.models_from(prices, ids))
        for run_id, error in failed:  # its own transaction: the claim has committed
            _fail(run_id, error, owners[run_id])
    except Exception:
        # The claim has committed, so the single path would find these runs held by a live
        # owner (this process) and leave them: let the leases go at once, then raise, and the
        # caller's single path claims them as it would have before this query.
        Run.objects.filter(pk__in=sorted(taken), status=RunStatus.RUNNING,
                           lease_owner__in=[owners[run_id] for run_id in sorted(taken)]).update(lease_until=lease_clock.now())
        raise
    for run_id in taken:
        prepared.setdefault(run_id, None)  # deleted meanwhile
    return prepared


def _claim_fresh_statement(owners: dict[int, str]) -> tuple[str, list[Any]]:
    """`claim_fresh`'s statement: SQL and parameters."""
    now = lease_clock.now()
    meta = Run._meta
    q = connection.ops.quote_name

    def column(name: str) -> str:
        return q(meta.get_field(name).column)

    def value(name: str, v: Any) -> Any:
        return meta.get_field(name).get_db_prep_value(v, connection)

    table, pk = q(meta.db_table), q(meta.pk.column)
    ids = sorted(owners)
    marks = ", ".join(["%s"] * len(ids))
    cases = " ".join(["WHEN %s THEN %s"] * len(ids))
    claimable = (f"{column('status')} = %s AND {column('lease_owner')} = '' AND NOT {column('cancel_requested')} "
                 f"AND {pk} IN ({marks})")
    if connection.vendor == "postgresql":
        # Locked in id order, the order every group commit locks runs in; a row someone holds
        # right now is skipped (its run takes the single path, which waits for it).
        where = f"{pk} IN (SELECT {pk} FROM {table} WHERE {claimable} ORDER BY {pk} FOR UPDATE SKIP LOCKED)"
    else:
        where = claimable  # SQLite: the transaction holds the database's one write lock
    sql = (f"UPDATE {table} SET {column('status')} = %s, {column('lease_owner')} = CASE {pk} {cases} END, "
           f"{column('lease_until')} = %s, {column('started_at')} = COALESCE({column('started_at')}, %s) "
           f"WHERE {where} RETURNING {pk}")
    params: list[Any] = [RunStatus.RUNNING]
    for run_id in ids:
        params += [run_id, owners[run_id]]
    params += [value("lease_until", now + timedelta(seconds=settings.RUN_LEASE_S)), value("started_at", now),
               RunStatus.QUEUED, *ids]
    return sql, params


def claim_one(run_id: int, owner: str) -> bool:
    """Take a queued run, or a running one whose lease expired (its worker died); False if the
    run is not runnable or another live worker holds it. Conditional, so only one claim wins."""
    from orchestrator.execution import lease_holder_is_dead

    now = lease_clock.now()
    claimable = Q(status__in=[RunStatus.QUEUED, RunStatus.RUNNING]) & (Q(lease_until__isnull=True) | Q(lease_until__lt=now))
    lease = {"status": RunStatus.RUNNING, "lease_owner": owner, "lease_until": now + timedelta(seconds=settings.RUN_LEASE_S),
             "started_at": Coalesce("started_at", Value(now))}
    with transaction.atomic():
        # The common case first: a queued run nobody ever held has no reservations to give back.
        fresh = Run.objects.filter(pk=run_id, status=RunStatus.QUEUED, lease_owner="", cancel_requested=False).update(**lease)
        claimed = fresh or Run.objects.filter(claimable, pk=run_id, cancel_requested=False).update(**lease)
        if not claimed:
            holder = Run.objects.filter(pk=run_id, status=RunStatus.RUNNING, cancel_requested=False).values_list(
                "lease_owner", flat=True).first()
            if holder == owner:
                # This execution's own lease (owners are unique per execution): the batch that
                # took it committed, but its answer was lost (the connection dropped after the
                # server ran it). It holds the run: go on, rather than leave it for a lease.
                return True
            if not holder or not lease_holder_is_dead(holder):
                return False
            # Its holder died on this host (a killed prefork child, a cold shutdown): take it now
            # instead of waiting for the lease to run out. Conditional on the same dead holder.
            if not Run.objects.filter(pk=run_id, status=RunStatus.RUNNING, lease_owner=holder,
                                      cancel_requested=False).update(**lease):
                return False
            log.warning("run %s: its lease holder %s is no longer running; taken over at once", run_id, holder)
        # Budget room a previous holder reserved for calls it never finished goes back, in the claim.
        released = 0 if fresh else release_run(run_id, keep_owner=owner)
        if released:
            log.warning("run %s: gave back %d budget reservation(s) of its previous holder", run_id, released)
    return True


def _fail(run_id: int, error: str, owner: str | None = None) -> None:
    """Fail a run the claim took but cannot prepare, as a crashed execution is failed: its lease
    let go, open steps closed, budget room given back, `run.failed` event and webhook."""
    from orchestrator.actions.runs import do_fail_run

    do_fail_run(run_id, error, owner)


def prepare(run_ids: list[int]) -> dict[int, Prepared | BaseException | None]:
    """Load what the claimed runs need, in one transaction with one query per kind of row (runs,
    steps, agents, limits, model prices). A run whose agents are missing or whose spec does not
    load is failed here (None)."""
    if not run_ids:
        return {}
    with transaction.atomic(savepoint=False):
        ids = sorted(set(run_ids))
        runs: list[Run] = _RUNS.models(ids)
        teams = sorted({run.team_id for run in runs})
        with_steps = {run_id for (run_id,) in _WITH_STEPS.values(ids)}
        agents = _AGENTS.models(teams)
        wanted = {(a.provider, a.model) for a in agents}
        prepared, failed = _assemble(
            runs, with_steps, agents, _LIMITS.models(teams),
            _PRICES.models(sorted({provider for provider, _ in wanted}), sorted({model for _, model in wanted})))
        for run_id, error in failed:
            _fail(run_id, error)
    for run_id in run_ids:
        prepared.setdefault(run_id, None)  # deleted meanwhile
    return prepared


def _assemble(runs: list[Run], with_steps: set[int], agents: list[Agent], limit_rows: list[Limit],
              price_rows: list[ModelPrice]) -> tuple[dict[int, Prepared | BaseException | None], list[tuple[int, str]]]:
    """The prepared runs from the rows read for them (`limit_rows` in the order `budgets_for_run`
    reads them; `price_rows` holding at least every row the agents' models may need), and the
    runs to fail, with why (their agents are missing, their spec does not load: what would
    fail the same way at every claim, so the run is failed, not left held for the sweep to hand
    out again)."""
    teams = sorted({run.team_id for run in runs})
    team_agents: dict[int, dict[str, Agent]] = {team: {} for team in teams}
    for agent in agents:
        team_agents[agent.team_id][agent.name] = agent
    # The teams' rate limits and budgets, in the order `budgets_for_run` reads them.
    limits: dict[int, list[Limit]] = {team: [] for team in teams}
    for row in limit_rows:
        limits[row.team_id].append(row)
    rates = {team: agent_rates(limits[team], {a.pk: a.name for a in team_agents[team].values()}) for team in teams}
    wanted = {(a.provider, a.model) for agents_ in team_agents.values() for a in agents_.values()}
    prices = {(provider, model): ModelPrice.pick(price_rows, provider, model) for provider, model in wanted}
    context = _Shared({team: get_redactor(team) for team in {run.team_id for run in runs if run.pk not in with_steps}},
                      prices, limits)
    prepared: dict[int, Prepared | BaseException | None] = {}
    failed: list[tuple[int, str]] = []
    for run in runs:
        try:
            prepared[run.pk] = _prepared(run, team_agents[run.team_id], rates[run.team_id], run.pk not in with_steps,
                                         context)
        except _AgentsMissing as missing:
            failed.append((run.pk, str(missing)))
            prepared[run.pk] = None
        except DatabaseError:
            raise
        except Exception as exc:  # its spec does not load (any more), or a bug: it would fail at every claim
            log.exception("run %s cannot be prepared", run.pk)
            failed.append((run.pk, f"the run cannot be prepared: {type(exc).__name__}: {exc}"[:2000]))
            prepared[run.pk] = None
    return prepared, failed


# The claim's reads, each compiled once per shape (`orchestrator/runners/compiled.py`).
_RUNS = CompiledRead("claim: runs", lambda ids: Run.objects.select_related("pipeline_version__pipeline").filter(
    pk__in=ids).order_by())  # no ORDER BY: the models' default orderings join and sort for nothing here
_WITH_STEPS = CompiledRead("claim: runs with steps", lambda ids: StepRun.objects.filter(run_id__in=ids).order_by(
    ).values_list("run_id", flat=True).distinct())
_AGENTS = CompiledRead("claim: agents", lambda teams: Agent.objects.filter(team_id__in=teams).order_by())
# The teams' rate limits and budgets, in the order `budgets_for_run` reads them.
_LIMITS = CompiledRead("claim: limits", lambda teams: Limit.objects.filter(
    team_id__in=teams, kind__in=[LimitKind.REQUESTS_PER_MINUTE, *BUDGET_KINDS],
    scope__in=[LimitScope.TEAM, LimitScope.AGENT, LimitScope.PIPELINE]).order_by("scope", "kind", "pk"))
# Every price row the agents' models may need: `ModelPrice.lookup_many`'s query.
_PRICES = CompiledRead("claim: prices", lambda providers, models_: ModelPrice.objects.filter(
    Q(provider__in=providers) & (Q(model__in=models_) | Q(model__endswith="*"))).order_by())


# The same reads by run ids, for `claim_in_one_query` (which cannot wait for the runs' teams).
def _teams_of(ids: list[int]) -> QuerySet[Run]:
    return Run.objects.filter(pk__in=ids).values("team_id")


_AGENTS_OF_RUNS = CompiledRead("claim: agents by runs", lambda ids: Agent.objects.filter(
    team_id__in=_teams_of(ids)).order_by())
_LIMITS_OF_RUNS = CompiledRead("claim: limits by runs", lambda ids: Limit.objects.filter(
    team_id__in=_teams_of(ids), kind__in=[LimitKind.REQUESTS_PER_MINUTE, *BUDGET_KINDS],
    scope__in=[LimitScope.TEAM, LimitScope.AGENT, LimitScope.PIPELINE]).order_by("scope", "kind", "pk"))
# Every price row of the agents' providers (a superset of `_PRICES`'s: `ModelPrice.pick` chooses).
_PRICES_OF_RUNS = CompiledRead("claim: prices by runs", lambda ids: ModelPrice.objects.filter(
    provider__in=Agent.objects.filter(team_id__in=_teams_of(ids)).values("provider")).order_by())


def agent_rates(rows: list[Limit], names: dict[int, str]) -> dict[str, int]:
    """The model calls per minute allowed to agents (by name; `names`: agent id -> name), among
    a team's limit rows in the order `_LIMITS` reads them."""
    return {names[row.agent_id]: int(row.value) for row in rows
            if row.scope == LimitScope.AGENT and row.kind == LimitKind.REQUESTS_PER_MINUTE and row.agent_id in names}


def limits_now(team_id: int, pipeline_id: int, agent_ids: dict[str, int]) -> tuple[list[Budget], dict[str, int]]:
    """A run's budgets and its agents' model-call rates (`agent_ids`: name -> id) as the limit
    table stands now: the claim's read (`_LIMITS`), again, for one team. The model door reads
    them during the run (`ModelDoor._fresh_limits`): what the claim read misses a limit created
    or changed since."""
    rows = _LIMITS.models([team_id])
    return budgets_from_limits(rows, team_id, pipeline_id), agent_rates(rows, {pk: name for name, pk in agent_ids.items()})


class _AgentsMissing(Exception):
    pass


@dataclass(slots=True)
class _Shared:
    """What the runs of one batch share: rows read once per distinct model and budget scope."""

    redactors: dict[int, Redactor]  # by team: the fresh runs' (each team's secrets redact its own data only)
    prices: dict[tuple[str, str], ModelPrice | None]
    limits: dict[int, list[Limit]]  # each team's limit rows
    scopes: dict[tuple[int, int], list[Budget]] = field(default_factory=dict)


_SPECS_KEPT = 256
_specs: dict[tuple[int, Any], PipelineSpec] = {}  # (version id, its creation moment) -> its parsed spec
_specs_lock = threading.Lock()


def _spec_of(version: PipelineVersion) -> PipelineSpec:
    """The version's parsed spec, parsed once per process: versions never change (their `save`
    refuses), and parsing with its cross-checks was half of a batch's preparation when hundreds
    of runs of one pipeline start together. The engine only reads a spec. Keyed by id and
    creation moment, so an id a database hands out again (a restored backup, a test's rolled
    back transaction) is not taken for the old version. The `_SPECS_KEPT` parsed last are kept."""
    key = (version.pk, version.created_at)
    with _specs_lock:
        found = _specs.get(key)
    if found is not None:
        return found
    spec = parse_spec(version.spec)
    with _specs_lock:
        if len(_specs) >= _SPECS_KEPT:
            del _specs[next(iter(_specs))]
        _specs[key] = spec
    return spec


def _prepared(run: Run, known: dict[str, Agent], rates: dict[str, int], fresh: bool, shared: _Shared) -> Prepared:
    spec = _spec_of(run.pipeline_version)
    names = spec.agent_names()
    missing = names - set(known)
    if missing:
        raise _AgentsMissing(f"agents not found: {', '.join(sorted(missing))}")
    rows = [known[name] for name in names]
    agents = {a.name: AgentConfig(a.name, a.provider, a.model, a.system_prompt, a.temperature, a.max_tokens,
                                  a.max_turns, a.provider_options(), a.defences) for a in rows}
    pipeline_id = run.pipeline_version.pipeline_id
    if (run.team_id, pipeline_id) not in shared.scopes:
        shared.scopes[run.team_id, pipeline_id] = budgets_from_limits(shared.limits[run.team_id], run.team_id, pipeline_id)
    load = None
    if fresh:
        load = StoreLoad(run.team_id, pipeline_id, run.pipeline_version.pipeline.slug,
                         {name: a.pk for name, a in known.items()}, shared.redactors[run.team_id],
                         run.input_tokens, run.output_tokens, run.cost_usd, run.last_seq, run.last_hash)
    return Prepared(run, spec, agents, {(a.provider, a.model): shared.prices[a.provider, a.model] for a in rows},
                    {a.name: a.pk for a in rows}, list(shared.scopes[run.team_id, pipeline_id]), dict(rates), load)


class ClaimCoalescer:
    """The claims of the runs starting on one event loop, taken by one writer job
    (`claim_runs`): at once (in the same loop turn) while fewer than `in_flight_max` batches
    are being taken; otherwise they wait, and when one ends, those waiting go at once, up to
    `max_batch` together.

    A claim's future resolves when its batch committed: to the prepared run, None, or the
    exception its claim raised. A caller cancelled meanwhile does not stop the batch (it may
    already be committing): it awaits the future anyway and hands back a run it got. A batch
    cancelled itself (a loop's teardown cancels every task left) still waits for its claim on
    the writer thread and hands its callers the answer; one cancelled before it started claimed
    nothing, and its callers hear so.
    """

    def __init__(self, max_batch: int = CLAIM_BATCH_MAX, in_flight_max: int = CLAIM_BATCHES_IN_FLIGHT):
        self.max_batch = max_batch
        self.in_flight_max = in_flight_max
        self._pending: list[tuple[int, str, asyncio.Future[Prepared | None]]] = []
        self._soon: asyncio.Handle | None = None  # the flush at the end of this loop turn
        self._batches: dict[asyncio.Task[None], list[tuple[int, str, asyncio.Future[Prepared | None]]]] = {}
        self.batches = 0  # batches taken, for tests and benchmarks
        self.claims = 0

    def claim(self, run_id: int, owner: str) -> asyncio.Future[Prepared | None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Prepared | None] = loop.create_future()
        self._pending.append((run_id, owner, future))
        if len(self._batches) >= self.in_flight_max:
            pass  # goes when a batch in flight ends (`_taken`)
        elif len(self._pending) >= self.max_batch:
            self._flush()
        elif self._soon is None:  # at the end of this loop turn, with the claims made in it
            self._soon = loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None
        batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
        if batch:
            task = asyncio.get_running_loop().create_task(self._take(batch), name="agentdeck-claims")
            self._batches[task] = batch
            task.add_done_callback(self._taken)

    def _taken(self, task: asyncio.Task[None]) -> None:
        for _, _, future in self._batches.pop(task, []):
            if not future.done():  # the batch was cancelled before it started: it claimed nothing
                future.set_exception(RuntimeError("claim not made: its batch was cancelled before it started"))
        # The claims that waited for it go now, together.
        while self._pending and len(self._batches) < self.in_flight_max:
            self._flush()

    async def _take(self, batch: list[tuple[int, str, asyncio.Future[Prepared | None]]]) -> None:
        self.batches += 1
        self.claims += len(batch)
        cancelled: asyncio.CancelledError | None = None
        try:
            job = write_job(claim_runs, [(run_id, owner) for run_id, owner, _ in batch])
            while True:
                try:
                    outcomes = await asyncio.shield(job)
                    break
                except asyncio.CancelledError as exc:
                    if job.cancelled():  # (nobody cancels the job itself: no answer will come)
                        raise
                    cancelled = exc  # the claim may be committing on its thread: its answer is awaited
        except BaseException as exc:  # no writer thread took it, or the job failed: nothing was claimed
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else RuntimeError(f"claim not made: {exc!r}"))
            if not isinstance(exc, Exception):
                raise
            return
        for (_, _, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
        if cancelled is not None:
            raise cancelled


_coalescers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ClaimCoalescer] = weakref.WeakKeyDictionary()


def coalescer() -> ClaimCoalescer:
    """The claim coalescer of the running loop."""
    loop = asyncio.get_running_loop()
    found = _coalescers.get(loop)
    if found is None:
        found = _coalescers[loop] = ClaimCoalescer()
    return found


def claim(run_id: int, owner: str) -> asyncio.Future[Prepared | None]:
    """Claim and load `run_id` for `owner` with the other runs starting on this loop now."""
    return coalescer().claim(run_id, owner)

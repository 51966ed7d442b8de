"""Enforcing rate limits and concurrency limits (Limit rows) where work enters:

- API requests per minute, per team, API key and user (`check_request_rate`, from API auth);
- concurrent runs per team, user, API key and agent (`check_concurrent_runs`, when a run starts);
- model requests per minute per agent (`wait_for_agent_slot`, in the model door: it waits).

Counting goes through the gateway's limiter (Redis when configured, else database
counters), so exactly the limit is admitted among concurrent requests.
"""

from __future__ import annotations

import asyncio
import time

from asgiref.sync import async_to_sync

from config.db_writer import release_connection
from mcpgateway.api_caller import Caller
from mcpgateway.ratelimit import get_limiter
from orchestrator.actions.errors import RateLimited
from orchestrator.engine.spec import parse_spec
from orchestrator.models import (
    ACTIVE_RUN_STATUSES,
    Limit,
    LimitKind,
    LimitScope,
    PipelineVersion,
    Run,
)


def check_request_rate(caller: Caller) -> None:
    """Count one API request against the caller's per-minute limits; RateLimited when over."""
    rows = Limit.objects.filter(team_id=caller.team_id, kind=LimitKind.REQUESTS_PER_MINUTE)
    checks = []
    for row in rows:
        if row.scope == LimitScope.TEAM:
            checks.append((f"req:team:{caller.team_id}", row, "the team"))
        elif row.scope == LimitScope.API_KEY and caller.api_key_id is not None and row.api_key_id == caller.api_key_id:
            checks.append((f"req:key:{caller.api_key_id}", row, "this API key"))
        elif row.scope == LimitScope.USER and caller.user_id is not None and row.user_id == caller.user_id:
            # per team: each team sets its own limit for the member, and counts only its own requests
            checks.append((f"req:team:{caller.team_id}:user:{caller.user_id}", row, "this user"))
    if checks:
        # The database limiter commits on its own writer thread: hand this thread's pooled
        # connection back first, or a burst of requests holding all of them waits on it forever.
        release_connection()
    limiter = get_limiter()
    for key, row, who in checks:
        decision = async_to_sync(limiter.hit)(key, int(row.value))
        if not decision.allowed:
            raise RateLimited(f"{int(row.value)} requests per minute for {who}", max(1.0, decision.retry_after_s))


def check_concurrent_runs(version: PipelineVersion, user_id: int | None, api_key_id: int | None) -> None:
    """Refuse a new run while a concurrency limit is reached. Call inside the transaction that
    creates the run, with the team row locked, so two starts cannot both pass."""
    team_id = version.pipeline.team_id
    rows = list(Limit.objects.filter(team_id=team_id, kind=LimitKind.CONCURRENT_RUNS).select_related("agent"))
    if not rows:
        return
    active = Run.objects.filter(team_id=team_id, status__in=ACTIVE_RUN_STATUSES)
    agents = parse_spec(version.spec).agent_names()
    for row in rows:
        limit = int(row.value)
        if row.scope == LimitScope.TEAM:
            count, who = active.count(), "the team"
        elif row.scope == LimitScope.USER and user_id is not None and row.user_id == user_id:
            count, who = active.filter(created_by_id=user_id).count(), "this user"
        elif row.scope == LimitScope.API_KEY and api_key_id is not None and row.api_key_id == api_key_id:
            count, who = active.filter(api_key_id=api_key_id).count(), "this API key"
        elif row.scope == LimitScope.AGENT and row.agent is not None and row.agent.name in agents:
            versions = active.values_list("pipeline_version__spec", flat=True)
            count = sum(1 for spec in versions if row.agent.name in parse_spec(spec).agent_names())
            who = f"agent {row.agent.name}"
        elif row.scope == LimitScope.PIPELINE and row.pipeline_id == version.pipeline_id:
            count, who = active.filter(pipeline_version__pipeline_id=version.pipeline_id).count(), "this pipeline"
        else:
            continue
        if count >= limit:
            raise RateLimited(f"{limit} concurrent runs for {who}; {count} are running", 10.0)


async def wait_for_agent_slot(agent_id: int | None, per_minute: int | None, max_wait_s: float = 120) -> None:
    """Throttle an agent's model calls to its requests-per-minute limit (waits, never fails fast)."""
    if agent_id is None or not per_minute:
        return
    # (Imported here, not at the top: API auth imports this module, and the store is heavy.)
    from orchestrator.store import retry_unreachable

    deadline = time.monotonic() + max_wait_s
    limiter = get_limiter()
    key = f"model:agent:{agent_id}"
    while True:
        # The database limiter's hit, tried again while the database is out of reach, as the
        # store's commit is: a lost connection used to fail the run. A hit whose answer was lost
        # may have been counted: the agent's limit then errs low for a minute, never high.
        decision = await retry_unreachable(lambda: limiter.hit(key, per_minute), f"rate limit {key}")
        if decision.allowed:
            return
        if time.monotonic() + decision.retry_after_s > deadline:
            from orchestrator.engine.errors import ProviderError

            raise ProviderError(f"agent model-call limit of {per_minute}/min reached", retryable=True)
        await asyncio.sleep(min(decision.retry_after_s, 5))

# Found by an outside review (2026-12-07, worker pool and failures); failed before its fix.
"""The model door's database work is tried again while the database is out of reach (see
test_review_pool_model_door_database_blip.py for real lost connections on PostgreSQL). Two cases
that need no server to lose, on any database:

- a reservation whose answer was lost after it committed is found and used, not taken twice
  (the second would be held until the run ends, and a tight budget would stop the run early);
- the database limiter's hit (an agent's model-call rate) failing once does not fail the run.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import OperationalError

from mcpgateway import ratelimit
from orchestrator import budgets
from orchestrator.models import BudgetCounter, BudgetReservation, Limit, UsageRecord
from tests.conftest import execute, pipeline, scripted, start

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_reservation_whose_answer_was_lost_is_used_not_taken_again(team, monkeypatch):
    scripted(team, "w", {"text": "done", "usage": {"input_tokens": 100, "output_tokens": 50}})
    # Room for one call's reservation (input + max_tokens), not for two.
    Limit.objects.create(team=team, scope="team", kind="tokens_per_day", value=Decimal(8_000))
    real, made = budgets.reserve, []

    def reserve_answer_lost(*args, **kwargs):
        reservation = real(*args, **kwargs)
        made.append(reservation)
        if len(made) == 1:
            raise OperationalError("server closed the connection unexpectedly")  # after the commit
        return reservation

    monkeypatch.setattr(budgets, "reserve", reserve_answer_lost)
    run = execute(start(pipeline(team, {"steps": [{"kind": "agent", "id": "s0", "agent": "w", "prompt": "go"}]})))

    assert run.status == "succeeded", run.error
    assert len(made) == 1, "the lost attempt's reservation was taken again"
    assert list(UsageRecord.objects.filter(run=run).values_list("input_tokens", "output_tokens")) == [(100, 50)]
    assert BudgetCounter.objects.get().used == 150
    assert not BudgetReservation.objects.exists()


def test_a_rate_limiter_hit_that_meets_a_database_error_is_tried_again(team, monkeypatch, settings):
    settings.REDIS_URL = ""
    monkeypatch.setattr(ratelimit, "_limiter", ratelimit.DatabaseLimiter())
    worker = scripted(team, "w", {"text": "y"})
    Limit.objects.create(team=team, scope="agent", kind="requests_per_minute", value=Decimal(10), agent=worker)
    real, hits = ratelimit.DatabaseLimiter.hit, []

    async def hit_once_failing(self, key, limit, window_s=60):
        hits.append(key)
        if len(hits) == 1:
            raise OperationalError("terminating connection due to administrator command")
        return await real(self, key, limit, window_s)

    monkeypatch.setattr(ratelimit.DatabaseLimiter, "hit", hit_once_failing)
    run = execute(start(pipeline(team, {"steps": [{"kind": "agent", "id": "s0", "agent": "w", "prompt": "go"}]})))

    assert run.status == "succeeded", run.error
    assert hits == [f"model:agent:{worker.pk}"] * 2

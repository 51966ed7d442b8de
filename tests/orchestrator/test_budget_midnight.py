"""A call reserved in one day's window and recorded after midnight was counted in the old day's
counter but its usage record was dated the new day; the new day's counter, created meanwhile
from the usage records (`_spent`), never learned of it, and the new day's recorded usage passed
the budget by that call (found by a review). A call's usage is now dated when its budget room
was taken.

The wall clock is shifted (time.time and django.utils.timezone.now, one offset) so that a UTC
midnight falls during run A's slow model call; everything else is the real engine, store and
door."""

from __future__ import annotations

import datetime as dt
import threading
import time
from decimal import Decimal

import pytest

from orchestrator.models import Limit, UsageRecord
from tests.conftest import execute, pipeline, scripted, start

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_call_in_flight_at_midnight_is_counted_in_the_day_its_usage_is_recorded(team, monkeypatch):
    from django.utils import timezone

    real_time = time.time
    now = real_time()
    next_midnight = (now // 86400 + 1) * 86400
    offset = next_midnight - now - 0.7  # midnight comes 0.7 s from here
    monkeypatch.setattr(time, "time", lambda: real_time() + offset)
    monkeypatch.setattr(timezone, "now", lambda: dt.datetime.fromtimestamp(time.time(), dt.UTC))

    scripted(team, "slow", {"text": "y" * 400, "delay_ms": 2500})  # 110 tokens, over midnight
    scripted(team, "w", {"text": "y" * 400})  # 110 tokens a step
    Limit.objects.create(team=team, scope="team", kind="tokens_per_day", value=Decimal(300))
    a = start(pipeline(team, {"steps": [{"kind": "agent", "id": "a", "agent": "slow", "prompt": "x" * 40}]}, name="a"))
    b = start(pipeline(team, {"steps": [{"kind": "agent", "id": f"s{i}", "agent": "w", "prompt": "x" * 40}
                                        for i in range(5)]}, name="b"))

    first = threading.Thread(target=execute, args=(a,))
    first.start()
    while time.time() < next_midnight + 0.2:  # A's call is in flight; the new day begins
        time.sleep(0.05)
    execute(b)
    first.join()

    day = dt.datetime.fromtimestamp(next_midnight, dt.UTC)
    records = UsageRecord.objects.filter(team=team, created_at__gte=day)
    recorded = sum(u.input_tokens + u.output_tokens for u in records)
    assert recorded <= 300, f"{recorded} tokens recorded on {day:%Y-%m-%d} under a daily budget of 300: " + \
        str([(u.run_id, u.input_tokens + u.output_tokens, u.created_at.isoformat()) for u in records])

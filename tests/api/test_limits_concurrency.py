# Found by an outside review (2026-12-07, the API and config import); failed before its fix.
"""One limit per (team, scope, kind, target), however its saves interleave.

`do_save_limit` checked "this target already has a limit of this kind" and then inserted, with
no lock and no unique constraint: two concurrent POST /limits both passed the check, two rows
existed, and PUT on either was refused from then on. Now the team row is locked before the
check, and partial unique constraints (one per scope) hold for every other writer; the
migration that adds them keeps the strictest row of any duplicates already saved."""

from __future__ import annotations

import json
import threading
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, connections, transaction
from django.db.migrations.executor import MigrationExecutor
from django.test import Client

import orchestrator.actions.limits as limit_actions
from orchestrator.models import BudgetCounter, Limit

ONLY_POSTGRES = pytest.mark.skipif("connection.vendor != 'postgresql'", reason="SQLite serialises the writers")


def _both(call, monkeypatch, target, name):
    """Run `call()` in two threads; `target.name` waits for the other thread (3 s at most) after
    running, so both requests are past the check before either inserts."""
    real = getattr(target, name)
    barrier = threading.Barrier(2)

    def waiting(*args, **kwargs):
        result = real(*args, **kwargs)
        try:
            barrier.wait(timeout=3)
        except threading.BrokenBarrierError:
            pass
        return result

    monkeypatch.setattr(target, name, waiting)
    results: list[tuple[int, dict]] = []

    def one():
        try:
            response = call(Client(raise_request_exception=False))
            results.append((response.status_code, response.json() if response.content else None))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


@ONLY_POSTGRES
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_creates_of_the_same_limit_make_one_limit(keys, monkeypatch):
    body = json.dumps({"scope": "team", "kind": "concurrent_runs", "value": 3})

    def post(client):
        return client.post("/api/v1/limits", body, content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {keys['owner']}")

    results = _both(post, monkeypatch, limit_actions, "check_limit")
    rows = list(Limit.objects.filter(team=keys["team"], kind="concurrent_runs").values_list("pk", flat=True))
    assert len(rows) == 1, (rows, results)
    statuses = sorted(status for status, _ in results)
    assert statuses[0] == 201 and statuses[1] in (400, 409), results
    refused = next(data for status, data in results if status != 201)
    assert refused["error"]["field"] == "kind", refused


def _unchecked(team, scope, kind, value, target_id=None, editing=None):
    """`check_limit` without its duplicate check: a writer that got past it (no team lock)."""
    target = {"agent": None, "pipeline": None, "api_key_id": None, "user": None}
    return limit_actions.CheckedLimit(scope, kind, Decimal(str(value)), target)


@pytest.mark.django_db
def test_it_answers_a_duplicate_the_check_missed_with_a_409_naming_kind(api, keys, monkeypatch):
    status, _ = api.call("post", "/limits", keys["owner"], {"scope": "team", "kind": "tokens_per_day", "value": 100})
    assert status == 201
    monkeypatch.setattr(limit_actions, "check_limit", _unchecked)
    status, data = api.call("post", "/limits", keys["owner"], {"scope": "team", "kind": "tokens_per_day", "value": 50})
    assert status == 409, (status, data)
    assert data["error"]["field"] == "kind" and "already has a limit of this kind" in data["error"]["message"], data
    assert list(Limit.objects.filter(team=keys["team"], kind="tokens_per_day").values_list("value", flat=True)) == [100]


@pytest.mark.django_db
def test_it_refuses_a_second_row_for_the_same_target_in_the_database(keys):
    team = keys["team"]
    Limit.objects.create(team=team, scope="user", user=keys["users"]["builder"], kind="concurrent_runs", value=2)
    Limit.objects.create(team=team, scope="user", user=keys["users"]["viewer"], kind="concurrent_runs", value=2)
    Limit.objects.create(team=team, scope="team", kind="concurrent_runs", value=2)
    with pytest.raises(IntegrityError), transaction.atomic():
        Limit.objects.create(team=team, scope="user", user=keys["users"]["builder"], kind="concurrent_runs", value=5)
    with pytest.raises(IntegrityError), transaction.atomic():
        Limit.objects.create(team=team, scope="team", kind="concurrent_runs", value=5)
    Limit.objects.create(team=keys["other_team"], scope="team", kind="concurrent_runs", value=5)  # another team's


@pytest.mark.django_db(transaction=True)
def test_it_migrates_an_instance_with_duplicates_keeping_the_strictest_row(keys):
    before = [("orchestrator", "0020_evalcase_archived")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        old = MigrationExecutor(connection).loader.project_state(before).apps.get_model("orchestrator", "Limit")
        team, other = keys["team"].pk, keys["other_team"].pk
        loose = old.objects.create(team_id=team, scope="team", kind="tokens_per_day", value=500)
        strict = old.objects.create(team_id=team, scope="team", kind="tokens_per_day", value=300)
        tie = old.objects.create(team_id=team, scope="team", kind="tokens_per_day", value=300)
        kept_other = old.objects.create(team_id=other, scope="team", kind="tokens_per_day", value=900)
        kept_kind = old.objects.create(team_id=team, scope="team", kind="tokens_per_month", value=900)
        BudgetCounter.objects.create(limit_id=loose.pk, window=1, used=10)
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
    assert sorted(Limit.objects.values_list("pk", flat=True)) == sorted([strict.pk, kept_other.pk, kept_kind.pk])
    assert not Limit.objects.filter(pk__in=[loose.pk, tie.pk]).exists()
    assert not BudgetCounter.objects.exists()
    with pytest.raises(IntegrityError), transaction.atomic():
        Limit.objects.create(team_id=team, scope="team", kind="tokens_per_day", value=1)

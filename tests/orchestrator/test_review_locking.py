"""A review decision and a cancel of the same run at the same moment: both end cleanly. The
decision locked the review item, then the run; the cancel the run, then its items — on
PostgreSQL they deadlocked and one of the two got a 500. (Found by a review; SQLite, one
writer at a time, never deadlocks, but the test runs there too.)"""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connections

from orchestrator.actions import reviews
from orchestrator.actions.errors import Conflict
from orchestrator.actions.runs import do_cancel_run
from orchestrator.models import ReviewItem, Run
from tests.conftest import run_spec

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_decision_and_a_cancel_at_once_both_end_cleanly(team, owner, teammate, monkeypatch):
    run = run_spec(team, {"steps": [{"kind": "review", "id": "g", "instructions": "ok?"}]})
    item = run.review_items.get()
    inside = threading.Event()
    redactor = reviews.get_redactor

    def held_inside(team_id=None):  # called inside the decision's transaction, after its locks: hold them a moment
        if threading.current_thread().name == "decide":
            inside.set()
            time.sleep(1.0)
        return redactor(team_id)

    monkeypatch.setattr(reviews, "get_redactor", held_inside)
    outcome: dict[str, str] = {}

    def decide() -> None:
        try:
            reviews.do_decide_review(item, owner, "approve", submit=False)
            outcome["decide"] = "ok"
        except Conflict:
            outcome["decide"] = "conflict"
        except Exception as exc:
            outcome["decide"] = f"{type(exc).__name__}: {exc}"
        finally:
            connections.close_all()

    def cancel() -> None:
        inside.wait(5)
        try:
            do_cancel_run(Run.objects.get(pk=run.pk), teammate)
            outcome["cancel"] = "ok"
        except Conflict:
            outcome["cancel"] = "conflict"
        except Exception as exc:
            outcome["cancel"] = f"{type(exc).__name__}: {exc}"
        finally:
            connections.close_all()

    threads = [threading.Thread(target=decide, name="decide"), threading.Thread(target=cancel, name="cancel")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert set(outcome.values()) <= {"ok", "conflict"}, outcome
    assert outcome["decide"] == "ok"  # it held its locks first
    run.refresh_from_db()
    assert ReviewItem.objects.get(pk=item.pk).status == "approved"
    assert run.cancel_requested or run.status == "cancelled"

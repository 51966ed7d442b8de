"""Scheduled runs: a validated cron per pipeline, stored as a celery-beat periodic task."""

from __future__ import annotations

import pytest
from django_celery_beat.models import PeriodicTask

from orchestrator.actions.errors import ActionError
from orchestrator.actions.schedules import do_save_schedule
from orchestrator.models import Run
from orchestrator.tasks import start_scheduled_run_task
from tests.conftest import pipeline, scripted

pytestmark = pytest.mark.django_db(transaction=True)

SPEC = {"inputs": {"topic": {"type": "string"}}, "steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "{{ input.topic }}"}]}


@pytest.fixture
def pipe(team):
    scripted(team, "w", {"text": "ok"})
    return pipeline(team, SPEC)


def test_it_stores_the_schedule_for_beat(pipe, owner):
    schedule = do_save_schedule(pipe, "30 7 * * 1-5", {"topic": "news"}, owner, timezone="Europe/Paris")

    task = PeriodicTask.objects.get(pk=schedule.periodic_task_id)
    assert task.task == "orchestrator.tasks.start_scheduled_run_task" and task.args == f"[{schedule.pk}]"
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("30", "7", "1-5")
    assert str(task.crontab.timezone) == "Europe/Paris"
    do_save_schedule(pipe, "0 * * * *", {"topic": "news"}, owner, enabled=False, schedule=schedule)
    assert PeriodicTask.objects.count() == 1 and not PeriodicTask.objects.get().enabled


@pytest.mark.parametrize(("cron", "field"), [("* * *", "cron"), ("61 * * * *", "cron"), ("*/0 * * * *", "cron"),
                                             ("0 7 * 13 *", "cron")])
def test_it_rejects_a_bad_cron(pipe, owner, cron, field):
    with pytest.raises(ActionError) as info:
        do_save_schedule(pipe, cron, {"topic": "x"}, owner)
    assert info.value.field == field
    assert not PeriodicTask.objects.exists()


def test_it_rejects_bad_input_and_an_unknown_zone(pipe, owner):
    with pytest.raises(ActionError) as info:
        do_save_schedule(pipe, "0 7 * * *", {}, owner)
    assert info.value.field == "input.topic"
    with pytest.raises(ActionError) as info:
        do_save_schedule(pipe, "0 7 * * *", {"topic": "x"}, owner, timezone="Mars/Olympus")
    assert info.value.field == "timezone"


def test_it_starts_the_run_when_beat_fires_and_skips_while_it_runs(pipe, owner, monkeypatch):
    from orchestrator.runners.inline import InlineRunner

    monkeypatch.setattr(InlineRunner, "submit", lambda self, run_id: None)  # stays queued: still active
    schedule = do_save_schedule(pipe, "0 7 * * *", {"topic": "morning"}, owner)

    first = start_scheduled_run_task(schedule.pk)
    second = start_scheduled_run_task(schedule.pk)

    assert first is not None and second is None
    run = Run.objects.get()
    assert run.input == {"topic": "morning"} and run.created_by == owner

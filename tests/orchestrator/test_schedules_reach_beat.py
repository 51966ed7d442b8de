"""Schedules reach beat and fail where the team sees it (found by a review): one saved in the
admin got no beat task and never fired, an edited cron left beat on the old time, a cron
celery refuses (day 7, `5-7`) was saved and silently dropped by beat, a deleted pipeline's task
kept firing, a removed member's schedule kept starting runs under their name, and a fire that
could not start a run raised into beat's log and nowhere else."""
from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler

from config.celery import app
from orchestrator.actions.errors import ActionError
from orchestrator.actions.schedules import do_save_schedule
from orchestrator.models import Membership, Run, Schedule
from orchestrator.tasks import start_scheduled_run_task
from tests.conftest import pipeline, scripted

pytestmark = pytest.mark.django_db(transaction=True)

SPEC = {"inputs": {"topic": {"type": "string"}}, "steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "{{ input.topic }}"}]}


@pytest.fixture
def pipe(team):
    scripted(team, "w", {"text": "ok"})
    return pipeline(team, SPEC)


def beat_entries() -> dict:
    scheduler = DatabaseScheduler(app=app, lazy=True)
    return scheduler.all_as_schedule()


def test_control_a_valid_cron_reaches_beat(pipe, owner):
    schedule = do_save_schedule(pipe, "0 * * * 1", {"topic": "news"}, owner)
    assert schedule.periodic_task.name in beat_entries()


@pytest.mark.parametrize("cron", ["0 * * * 7", "0 * * * 5-7"], ids=["sunday-as-7", "fri-sun"])
def test_an_accepted_cron_is_one_beat_can_run(pipe, owner, cron):
    """Hour `*` so beat's +/-2 h prefilter never hides the task; the control above shows it is listed."""
    with pytest.raises(ActionError, match="0 is Sunday") as refused:
        do_save_schedule(pipe, cron, {"topic": "news"}, owner)
    assert refused.value.field == "cron" and not Schedule.objects.exists()


def test_a_schedule_added_in_the_admin_gets_a_periodic_task(pipe, owner):
    owner.is_staff = owner.is_superuser = True
    owner.save()
    client = Client()
    client.force_login(owner)
    response = client.post("/admin/orchestrator/schedule/add/", {
        "pipeline": pipe.pk, "version": "", "cron": "0 7 * * 1-5", "timezone": "UTC", "input": '{"topic": "news"}',
        "enabled": "on", "skip_if_running": "on", "created_by": owner.pk})
    assert response.status_code == 302, response.content.decode()[:2000]
    schedule = Schedule.objects.get()
    task = schedule.periodic_task
    assert task is not None and task.enabled and (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("0", "7", "1-5")


def test_a_cron_edited_in_the_admin_reaches_beat(pipe, owner):
    owner.is_staff = owner.is_superuser = True
    owner.save()
    schedule = do_save_schedule(pipe, "0 7 * * *", {"topic": "news"}, owner)
    client = Client()
    client.force_login(owner)
    response = client.post(f"/admin/orchestrator/schedule/{schedule.pk}/change/", {
        "pipeline": pipe.pk, "version": "", "cron": "30 18 * * *", "timezone": "Europe/Paris", "input": '{"topic": "news"}',
        "enabled": "on", "skip_if_running": "on", "created_by": owner.pk})
    assert response.status_code == 302, response.content.decode()[:2000]
    task = PeriodicTask.objects.get(pk=schedule.periodic_task_id)
    crontab = task.crontab
    assert (crontab.minute, crontab.hour, str(crontab.timezone)) == ("30", "18", "Europe/Paris"), \
        f"Schedule says `30 18 * * *` Europe/Paris, beat still fires `{crontab.minute} {crontab.hour} ...` {crontab.timezone}"


def test_the_admin_refuses_a_bad_cron(pipe, owner):
    owner.is_staff = owner.is_superuser = True
    owner.save()
    client = Client()
    client.force_login(owner)
    response = client.post("/admin/orchestrator/schedule/add/", {
        "pipeline": pipe.pk, "version": "", "cron": "every day please", "timezone": "Mars/Olympus", "input": '{}',
        "enabled": "on", "skip_if_running": "on", "created_by": owner.pk})
    assert response.status_code == 200 and not Schedule.objects.exists()
    assert "five fields" in response.content.decode()


def test_deleting_a_pipeline_removes_its_beat_task(pipe, owner):
    schedule = do_save_schedule(pipe, "* * * * *", {"topic": "news"}, owner)
    task_id = schedule.periodic_task_id
    pipe.delete()
    assert not PeriodicTask.objects.filter(pk=task_id).exists(), "beat keeps firing a task for a deleted schedule"


def test_a_schedule_of_a_removed_member_stops_starting_runs(pipe, owner, team):
    builder = get_user_model().objects.create_user("leaver")
    Membership.objects.create(team=team, user=builder, role="builder")
    schedule = do_save_schedule(pipe, "0 7 * * *", {"topic": "news"}, builder)
    Membership.objects.filter(team=team, user=builder).delete()  # left the team (admin)
    builder.is_active = False
    builder.save()
    start_scheduled_run_task(schedule.pk)
    assert not Run.objects.exists()
    schedule.refresh_from_db()
    assert "leaver may no longer start runs" in schedule.last_error


def test_a_fire_that_cannot_start_is_recorded_not_lost(pipe, owner, team):
    from orchestrator.actions.pipelines import do_save_pipeline_version

    schedule = do_save_schedule(pipe, "0 7 * * *", {"topic": "news"}, owner)
    # the pipeline gets a new required input after the schedule was saved (schedule follows the latest version)
    do_save_pipeline_version(pipe, {"inputs": {"topic": {"type": "string"}, "lang": {"type": "string"}},
                                    "steps": SPEC["steps"]}, owner)
    start_scheduled_run_task(schedule.pk)
    schedule.refresh_from_db()
    assert not Run.objects.exists() and "input 'lang' is required" in schedule.last_error, schedule.last_error
    do_save_pipeline_version(pipe, SPEC, owner)
    start_scheduled_run_task(schedule.pk)
    schedule.refresh_from_db()
    assert Run.objects.count() == 1 and schedule.last_error == ""

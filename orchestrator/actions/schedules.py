"""Scheduled runs: a cron expression per pipeline, kept as a celery-beat PeriodicTask."""

from __future__ import annotations

import json
import logging
import zoneinfo
from typing import Any

from celery.schedules import crontab
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils.timezone import now as timezone_now
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from mcpgateway.whole_numbers import is_whole
from orchestrator.actions.errors import ActionError
from orchestrator.actions.runs import check_run_input
from orchestrator.engine.spec import parse_spec
from orchestrator.models import Membership, Pipeline, Role, Schedule

log = logging.getLogger(__name__)

# Day of week 0-6, 0 = Sunday: celery's crontab refuses 7, and django-celery-beat swallows that
# refusal, so a schedule with 7 showed as enabled and never ran.
RANGES = {"minute": (0, 59), "hour": (0, 23), "day_of_month": (1, 31), "month_of_year": (1, 12), "day_of_week": (0, 6)}


def check_cron(cron: str) -> dict[str, str]:
    """The five crontab fields, each `*`, a number, a range, a list or a step within its range
    — and what celery's own crontab accepts (beat drops a schedule it cannot read, silently)."""
    parts = cron.split()
    if len(parts) != 5:
        raise ActionError("a cron expression has five fields: minute hour day-of-month month day-of-week", "cron")
    fields = dict(zip(RANGES, parts, strict=True))
    for name, text in fields.items():
        low, high = RANGES[name]
        for item in text.split(","):
            base, _, step = item.partition("/")
            if step and not (is_whole(step) and int(step) > 0):
                raise ActionError(f"{name}: bad step in {item!r}", "cron")
            if base == "*":
                continue
            bounds = base.split("-")
            if len(bounds) > 2 or not all(is_whole(b) and low <= int(b) <= high for b in bounds):
                raise ActionError(f"{name}: {item!r} is outside {low}-{high}"
                                  + (" (0 is Sunday)" if name == "day_of_week" else ""), "cron")
    try:
        crontab(**fields)
    except ValueError as exc:
        raise ActionError(f"cron: {exc}", "cron") from None
    return fields


def check_schedule(pipeline: Pipeline, cron: str, run_input: Any, timezone: str,
                   version: int | None) -> tuple[dict[str, str], dict[str, Any]]:
    """The crontab fields and the checked run input of a schedule; ActionError naming the field."""
    fields = check_cron(cron)
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ActionError(f"unknown time zone {timezone!r}", "timezone") from None
    pinned = pipeline.versions.filter(number=version).first() if version else pipeline.latest_version()
    if pinned is None:
        raise ActionError(f"pipeline {pipeline.pk} has no version {version}", "version")
    return fields, check_run_input(parse_spec(pinned.spec), run_input)


@transaction.atomic
def do_save_schedule(pipeline: Pipeline, cron: str, run_input: Any = None, user: AbstractBaseUser | None = None,
                     timezone: str = "UTC", version: int | None = None, enabled: bool = True,
                     schedule: Schedule | None = None) -> Schedule:
    fields, checked = check_schedule(pipeline, cron, run_input, timezone, version)
    crontab, _ = CrontabSchedule.objects.get_or_create(timezone=timezone, **fields)
    schedule = schedule or Schedule(pipeline=pipeline, created_by=user)
    schedule.cron, schedule.timezone, schedule.input, schedule.version, schedule.enabled = cron, timezone, checked, version, enabled
    schedule.save()
    task = schedule.periodic_task or PeriodicTask(name=f"agentdeck schedule {schedule.pk}")
    task.task = "orchestrator.tasks.start_scheduled_run_task"
    task.crontab = crontab
    task.args = json.dumps([schedule.pk])
    task.enabled = enabled
    task.save()
    if schedule.periodic_task_id != task.pk:
        schedule.periodic_task = task
        schedule.save(update_fields=["periodic_task"])
    return schedule


def do_start_scheduled_run(schedule_id: int) -> Any:
    """What beat triggers: start the scheduled run, unless disabled or (optionally) still running."""
    from orchestrator.actions.runs import do_start_run

    schedule = Schedule.objects.select_related("pipeline", "last_run").filter(pk=schedule_id).first()
    if schedule is None or not schedule.enabled:
        return None
    if schedule.skip_if_running and schedule.last_run is not None and not schedule.last_run.is_finished:
        return None
    try:
        owner = schedule.created_by
        if owner is not None:
            # It starts runs as its creator: only while they may (a removed or deactivated
            # member's schedule kept starting runs under their name).
            membership = Membership.objects.filter(team_id=schedule.pipeline.team_id, user_id=owner.pk).first()
            if not owner.is_active or membership is None or not membership.has_role(Role.BUILDER):
                raise ActionError(f"{owner.get_username()} may no longer start runs in this team; "
                                  "save the schedule again as someone who may", "created_by")
        version = (schedule.pipeline.versions.filter(number=schedule.version).first() if schedule.version
                   else schedule.pipeline.latest_version())
        if version is None:
            raise ActionError(f"the pipeline has no version {schedule.version}", "version")
        run = do_start_run(version, check_run_input(parse_spec(version.spec), schedule.input), owner)
    except ActionError as exc:
        # Left where the team sees it (it went nowhere: no run, nothing recorded).
        Schedule.objects.filter(pk=schedule.pk).update(last_error=f"{timezone_now():%Y-%m-%d %H:%M} UTC: {exc.message}"[:2000])
        log.warning("schedule %s started no run: %s", schedule.pk, exc.message)
        return None
    Schedule.objects.filter(pk=schedule.pk).update(last_run=run, last_error="")
    return run


def do_delete_schedule(schedule: Schedule) -> None:
    """The schedule, and with it its beat task (`drop_beat_task`)."""
    schedule.delete()


def drop_beat_task(sender: type, instance: Schedule, **kwargs: Any) -> None:
    """post_delete of a Schedule, however it goes (the admin, its pipeline deleted): its beat
    task goes too — one left behind kept firing for a schedule that no longer existed."""
    if instance.periodic_task_id is not None:
        PeriodicTask.objects.filter(pk=instance.periodic_task_id).delete()

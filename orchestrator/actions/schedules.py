"""Scheduled runs: a cron expression per pipeline, kept as a celery-beat PeriodicTask."""

from __future__ import annotations

import json
import zoneinfo
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from mcpgateway.whole_numbers import is_whole
from orchestrator.actions.errors import ActionError
from orchestrator.actions.runs import check_run_input
from orchestrator.engine.spec import parse_spec
from orchestrator.models import Pipeline, Schedule

RANGES = {"minute": (0, 59), "hour": (0, 23), "day_of_month": (1, 31), "month_of_year": (1, 12), "day_of_week": (0, 7)}


def check_cron(cron: str) -> dict[str, str]:
    """The five crontab fields, each `*`, a number, a range, a list or a step within its range."""
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
                raise ActionError(f"{name}: {item!r} is outside {low}-{high}", "cron")
    return fields


@transaction.atomic
def do_save_schedule(pipeline: Pipeline, cron: str, run_input: Any = None, user: AbstractBaseUser | None = None,
                     timezone: str = "UTC", version: int | None = None, enabled: bool = True,
                     schedule: Schedule | None = None) -> Schedule:
    fields = check_cron(cron)
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ActionError(f"unknown time zone {timezone!r}", "timezone") from None
    pinned = pipeline.versions.filter(number=version).first() if version else pipeline.latest_version()
    if pinned is None:
        raise ActionError(f"pipeline {pipeline.pk} has no version {version}", "version")
    checked = check_run_input(parse_spec(pinned.spec), run_input)
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
    version = schedule.pipeline.versions.filter(number=schedule.version).first() if schedule.version else schedule.pipeline.latest_version()
    run = do_start_run(version, schedule.input, schedule.created_by)
    Schedule.objects.filter(pk=schedule.pk).update(last_run=run)
    return run

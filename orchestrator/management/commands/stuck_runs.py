"""List runs no live worker is executing (expired lease, or queued and never claimed); `--requeue` hands them back."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from orchestrator.actions.runs import mark_dispatched, stuck_runs
from orchestrator.runners import get_runner


class Command(BaseCommand):
    help = "List stuck runs (expired lease or never claimed); --requeue submits them to the runner again."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--requeue", action="store_true", help="submit them to the configured runner")
        parser.add_argument("--queued-for", type=int, default=120, help="seconds a queued run may wait (default 120)")

    def handle(self, *args, **options) -> None:
        runs = list(stuck_runs(options["queued_for"]))
        if options["requeue"]:
            mark_dispatched([run.pk for run in runs])
        for run in runs:
            self.stdout.write(f"run {run.pk} {run.status} lease_owner={run.lease_owner or '-'} lease_until={run.lease_until}")
            if options["requeue"]:
                get_runner().submit(run.pk)
        self.stdout.write(f"{len(runs)} stuck run(s){', requeued' if options['requeue'] and runs else ''}")

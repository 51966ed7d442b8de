"""Create the demo team, admin user, agents and the two reference pipelines; print the login."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from orchestrator.demo import seed_demo


class Command(BaseCommand):
    help = "Create or refresh the demo team, admin login, agents and reference pipelines."

    def handle(self, *args, **options) -> None:
        team, username, password = seed_demo()
        kinds = sorted({a.provider for a in team.agents.all()})
        self.stdout.write(self.style.SUCCESS(f"Demo team {team.slug!r} ready (agents use: {', '.join(kinds)})."))
        self.stdout.write(f"Admin login: {username} / {password}")

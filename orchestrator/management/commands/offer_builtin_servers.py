"""manage.py offer_builtin_servers: put the built-in tool servers' templates (code, sandbox,
office) in the instance's catalogue, as `make run`'s seed does.

Teams' "create from template" and "install the injection suite" only use what the catalogue
offers; an operator offers the built-ins with this command (or by doing one of those actions
once). An existing template of that name is rewritten to the shipped one."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from mcpgateway.actions.templates import do_save_template
from orchestrator.evals.suite_files import office_template
from orchestrator.pipeline_templates import builtin_template


class Command(BaseCommand):
    help = "Offer the built-in tool servers (code, sandbox, office) in the instance's server catalogue."

    def handle(self, *args: Any, **options: Any) -> None:
        for spec in (builtin_template("code"), builtin_template("sandbox"), office_template()):
            template = do_save_template(spec, operator=True)  # the command line is an operator's
            self.stdout.write(f"offered {template.name}: {template.command} {' '.join(template.args)}")

"""Signed, verifiable run traces.

    manage.py trace export <run> [-o run-42.trace.json]
    manage.py trace verify <file> [--public-key KID=BASE64 ...]

`verify` exits 1 when the file does not verify, naming the first broken link.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from orchestrator.models import Run
from orchestrator.trace_files import export_trace, verify_trace


class Command(BaseCommand):
    help = "Export a run's signed trace, or verify a trace file."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        p = sub.add_parser("export", help="write a run's signed trace")
        p.add_argument("run", type=int)
        p.add_argument("-o", "--output", help="file to write (default: stdout)")
        p = sub.add_parser("verify", help="check a trace file's chain, counts and signature")
        p.add_argument("file")
        p.add_argument("--public-key", action="append", default=[], metavar="KID=BASE64",
                       help="trust this key instead of the instance's (repeatable)")

    def handle(self, *args, action: str, **options):
        if action == "export":
            run = Run.objects.select_related("pipeline_version__pipeline").filter(pk=options["run"]).first()
            if run is None:
                raise CommandError(f"no run {options['run']}")
            text = json.dumps(export_trace(run), indent=1, ensure_ascii=False)
            if options["output"]:
                Path(options["output"]).write_text(text)
                self.stdout.write(f"wrote the signed trace of run {run.pk} to {options['output']}")
            else:
                self.stdout.write(text)
            return
        try:
            document = json.loads(Path(options["file"]).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CommandError(f"cannot read {options['file']}: {exc}") from None
        keys = None
        if options["public_key"]:
            keys = {}
            for item in options["public_key"]:
                kid, sep, value = item.partition("=")
                if not sep:
                    raise CommandError(f"--public-key {item!r}: write KID=BASE64")
                keys[kid] = value
        report = verify_trace(document, keys)
        if report.ok:
            self.stdout.write(f"OK: {report.counts['events']} events, {report.counts['calls']} calls, "
                              f"{report.counts['audit']} audit rows; signed by {report.signed_by}")
            return
        self.stderr.write(f"BROKEN at {report.first_broken}")
        for problem in report.problems:
            self.stderr.write(f"  {problem}")
        sys.exit(1)



"""Run a pipeline from the command line, printing live progress and the final outputs.

    manage.py run_pipeline code-review --input '{"task": "add two numbers"}'
    manage.py run_pipeline market-analysis --input ticker=ACME
    manage.py run_pipeline --resume 42
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from mcpgateway.whole_numbers import is_whole
from orchestrator.actions import do_resume_run, do_start_run
from orchestrator.actions.errors import ActionError
from orchestrator.engine.errors import SpecError
from orchestrator.execution import execute_run
from orchestrator.models import Pipeline, Run


def parse_input(values: list[str]) -> dict[str, Any]:
    """`--input` takes one JSON object, or any number of key=value pairs."""
    if len(values) == 1 and values[0].lstrip().startswith("{"):
        try:
            data = json.loads(values[0])
        except json.JSONDecodeError as exc:
            raise CommandError(f"--input is not valid JSON: {exc}") from None
        return data
    result: dict[str, Any] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CommandError(f"--input {item!r}: use key=value or one JSON object")
        result[key] = value
    return result


class Progress:
    """Prints one line per step change, with tokens and elapsed time."""

    def __init__(self, out: Any, stream_text: bool):
        self.out = out
        self.stream_text = stream_text
        self.started = time.monotonic()
        self.tokens = 0

    def __call__(self, event: dict[str, Any]) -> None:
        kind, data, key = event["type"], event["data"], event["step_key"]
        elapsed = f"{time.monotonic() - self.started:6.2f}s"
        if kind == "llm.delta":
            if self.stream_text:
                self.out.write(data["text"], ending="")
            return
        if kind == "llm.finished":
            self.tokens += data["input_tokens"] + data["output_tokens"]
            if self.stream_text:
                self.out.write("")
            return
        if kind in ("step.started", "step.succeeded", "step.failed", "step.retrying", "step.waiting_review",
                    "tool.finished", "loop.iteration", "branch.taken"):
            detail = ""
            if kind == "step.failed" or kind == "step.retrying":
                detail = f" - {data.get('error')}"
            elif kind == "tool.finished":
                detail = f" {data['name']} {'error' if data['is_error'] else 'ok'}"
            elif kind == "loop.iteration":
                detail = f" #{data['iteration']}"
            elif kind == "step.waiting_review":
                detail = f" ({data['reason']})"
            self.out.write(f"[{elapsed}] {key or '-':<24} {kind:<20} tokens={self.tokens}{detail}")
        elif kind.startswith("run."):
            self.out.write(f"[{elapsed}] {'run':<24} {kind}")


class Command(BaseCommand):
    help = "Run (or resume) a pipeline in this process, printing progress and the outputs."

    def add_arguments(self, parser) -> None:
        parser.add_argument("pipeline", nargs="?", help="pipeline slug (or id)")
        parser.add_argument("--input", nargs="*", default=[], help="JSON object, or key=value pairs")
        parser.add_argument("--team", help="team slug, when the pipeline slug is ambiguous")
        parser.add_argument("--pipeline-version", dest="pipeline_version", type=int, help="pipeline version number (default: latest)")
        parser.add_argument("--resume", type=int, metavar="RUN_ID", help="resume this run instead of starting one")
        parser.add_argument("--stream", action="store_true", help="print model text as it streams")

    def handle(self, *args, **options) -> None:
        if options["resume"]:
            run = Run.objects.filter(pk=options["resume"]).first()
            if run is None:
                raise CommandError(f"no run {options['resume']}")
            if run.status != "running":
                try:
                    run = do_resume_run(run, submit=False)
                except ActionError as exc:
                    raise CommandError(exc.message) from None
        else:
            run = self._start(options)
        self.stdout.write(f"run {run.pk}: {run.pipeline_version}")
        # SIGTERM exits through Python (atexit hands the run back) instead of killing us mid-write.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        progress = Progress(self.stdout, options["stream"])
        outcome = asyncio.run(execute_run(run.pk, listeners=[progress]))
        run.refresh_from_db()
        if outcome is None:
            raise CommandError(f"run {run.pk} is {run.status}; nothing to execute")
        self.stdout.write(f"status: {run.status}  tokens: {run.input_tokens}+{run.output_tokens}  cost: ${run.cost_usd}")
        if run.output is not None:
            self.stdout.write(json.dumps(run.output, indent=2, ensure_ascii=False))
        if run.error:
            self.stderr.write(run.error)
        if run.status == "waiting_review":
            items = ", ".join(f"#{i.pk} {i.step_key} ({i.reason})" for i in run.review_items.filter(status="pending"))
            self.stdout.write(f"waiting for review: {items}")
        if run.status == "failed":
            sys.exit(1)

    def _start(self, options: dict[str, Any]) -> Run:
        if not options["pipeline"]:
            raise CommandError("name a pipeline (slug) or use --resume RUN_ID")
        ref = options["pipeline"]
        pipelines = Pipeline.objects.filter(pk=int(ref)) if is_whole(ref) else Pipeline.objects.filter(slug=ref)
        if options["team"]:
            pipelines = pipelines.filter(team__slug=options["team"])
        found = list(pipelines[:2])
        if not found:
            raise CommandError(f"no pipeline {ref!r}")
        if len(found) > 1:
            raise CommandError(f"pipeline {ref!r} exists in several teams; add --team")
        pipeline = found[0]
        version = pipeline.versions.filter(number=options["pipeline_version"]).first() if options["pipeline_version"] else pipeline.latest_version()
        if version is None:
            raise CommandError(f"pipeline {ref!r} has no version {options['pipeline_version']}")
        try:
            return do_start_run(version, parse_input(options["input"]), submit=False)
        except (ActionError, SpecError) as exc:
            raise CommandError(str(exc)) from None

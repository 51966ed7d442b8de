"""Engine per-step overhead of tracing (issue 10): the same durable run of sequential agent
steps (zero-latency scripted model, SQLite WAL, full fsync) with tracing off — the default
without OTEL_EXPORTER_OTLP_ENDPOINT — and on, exporting to an in-memory exporter. Printed
as per-step cost and the on/off ratio; "off" must cost nothing measurable against the
engine's own figure.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.bench_engine import _setup_django, _spec


def main() -> int:
    _setup_django()
    from asgiref.sync import async_to_sync
    from django.contrib.auth import get_user_model
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from config import tracing
    from mcpgateway.inprocess import InProcessToolbox
    from orchestrator.actions import do_create_pipeline, do_create_team, do_start_run
    from orchestrator.execution import execute_run
    from orchestrator.models import Agent

    steps, repeats = 200, 7
    user = get_user_model().objects.create_user("bench-tracing")
    team = do_create_team("Bench tracing", user)
    Agent.objects.create(team=team, name="fast", provider="scripted", model="scripted-1",
                         options={"script": {"replies": [{"text": "ok"}]}})
    pipe = do_create_pipeline(team, "bench", _spec(steps))

    def per_step() -> float:
        run = do_start_run(pipe.latest_version(), {}, user, submit=False)
        started = time.perf_counter()
        outcome = async_to_sync(execute_run)(run.pk, toolbox=InProcessToolbox())
        assert outcome is not None and outcome.status == "succeeded"
        return (time.perf_counter() - started) / steps * 1000

    assert not tracing.enabled(), "unset OTEL_EXPORTER_OTLP_ENDPOINT for this benchmark"
    per_step()
    off = [per_step() for _ in range(repeats)]
    exporter = InMemorySpanExporter()
    tracing.setup_tracing(exporter)
    per_step()
    on = [per_step() for _ in range(repeats)]
    spans = len(exporter.get_finished_spans())
    tracing.shutdown()
    off_again = [per_step() for _ in range(repeats)]

    a, b, c = statistics.median(off), statistics.median(on), statistics.median(off_again)
    print(f"tracing: {steps} sequential agent steps per run, durable (SQLite, full fsync), median of {repeats} runs")
    print(f"  tracing off (no OTLP endpoint):        {a:.3f} ms/step")
    print(f"  tracing on, in-memory exporter:        {b:.3f} ms/step   ratio on/off {b / a:.2f}x   "
          f"({spans // (repeats + 1)} spans per run)")
    print(f"  tracing off again:                     {c:.3f} ms/step   ratio {c / a:.2f}x (run-to-run noise)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

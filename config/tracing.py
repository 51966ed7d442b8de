"""OpenTelemetry tracing with the GenAI semantic conventions — off (and free) unless configured.

With `OTEL_EXPORTER_OTLP_ENDPOINT` set, `setup_tracing()` installs an SDK tracer provider
that exports over OTLP/HTTP (`OTEL_SERVICE_NAME`, default `agentdeck`). Without it, `span()`
returns a shared null context manager: no tracer call, no allocation beyond the call itself.

Spans: one trace per run (`run <pipeline>`, a child of the API request that started it —
the context travels on the run row to whichever worker executes it); `invoke_agent <agent>`
per agent step attempt; `chat <model>` per model call; `mcpgateway.dispatch` per tool call
with `execute_tool <tool>` inside it around the upstream call. The trace context reaches
upstream MCP servers as the `traceparent` of the request's `_meta` and, over HTTP, as the
`traceparent` header.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

_provider = None  # the SDK TracerProvider once tracing is on
_NULL = contextlib.nullcontext()


def enabled() -> bool:
    return _provider is not None


def setup_tracing(exporter: Any = None, *, force: bool = False) -> bool:
    """Turn tracing on when an OTLP endpoint is configured (or an exporter is given, e.g. an
    in-memory one in tests and benchmarks). Idempotent; returns whether tracing is on."""
    global _provider
    if _provider is not None and not force:
        return True
    if exporter is None and not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return False
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "agentdeck")}))
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(), schedule_delay_millis=500))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    if _provider is None:
        trace.set_tracer_provider(provider)
    _provider = provider
    return True


def flush(timeout_ms: int = 5000) -> None:
    if _provider is not None:
        _provider.force_flush(timeout_ms)


def shutdown() -> None:
    global _provider
    if _provider is not None:
        _provider.shutdown()
        _provider = None


def _tracer():
    return _provider.get_tracer("agentdeck")


def span(name: str, attributes: dict[str, Any] | None = None, *, kind: str = "internal", parent: Any = None):
    """A context manager for a span (current while inside), or a no-op when tracing is off."""
    if _provider is None:
        return _NULL
    return _span(name, attributes, kind, parent)


@contextlib.contextmanager
def _span(name: str, attributes: dict[str, Any] | None, kind: str, parent: Any) -> Iterator[Any]:
    from opentelemetry.trace import SpanKind, Status, StatusCode

    kinds = {"internal": SpanKind.INTERNAL, "server": SpanKind.SERVER, "client": SpanKind.CLIENT,
             "consumer": SpanKind.CONSUMER}
    with _tracer().start_as_current_span(name, context=parent, kind=kinds[kind],
                                         attributes={k: v for k, v in (attributes or {}).items() if v is not None},
                                         record_exception=True, set_status_on_exception=False) as current:
        try:
            yield current
        except BaseException as exc:
            if not isinstance(exc, GeneratorExit):
                current.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:300]))
                current.set_attribute("error.type", type(exc).__name__)
            raise


def set_attributes(target: Any, attributes: dict[str, Any]) -> None:
    """Set attributes on a span from `span()` (ignored when tracing is off)."""
    if target is not None and _provider is not None:
        target.set_attributes({k: v for k, v in attributes.items() if v is not None})


def current_traceparent() -> dict[str, str]:
    """The current context as W3C headers (`traceparent`, maybe `tracestate`); empty when off."""
    if _provider is None:
        return {}
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier


def context_from(carrier: dict[str, str] | None) -> Any:
    """A parent context from W3C headers (None when off or absent)."""
    if _provider is None or not carrier:
        return None
    from opentelemetry.propagate import extract

    return extract(carrier)


def ids() -> tuple[str, str]:
    """(trace id, span id) of the current span, hex; empty strings when off or outside a span."""
    if _provider is None:
        return "", ""
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return "", ""
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


@contextlib.contextmanager
def attached(carrier: dict[str, Any] | None) -> Iterator[None]:
    """Make the context in `carrier` (W3C keys) current here — for work handed to another
    task or loop, such as the upstream session's call on the gateway's background loop."""
    parent = context_from({k: carrier[k] for k in ("traceparent", "tracestate") if carrier and isinstance(carrier.get(k), str)})
    if parent is None:
        yield
        return
    from opentelemetry import context as otel_context

    token = otel_context.attach(parent)
    try:
        yield
    finally:
        otel_context.detach(token)

"""The gateway's Prometheus metrics, recorded where each call's audit row is written."""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import Counter, Histogram

from mcpgateway.models import CallStatus

log = logging.getLogger(__name__)
TOOL_CALLS = Counter("agentdeck_tool_calls", "Tool calls through the gateway.", ["server", "tool", "status"])
TOOL_SECONDS = Histogram("agentdeck_tool_call_duration_seconds", "Gateway tool-call latency, dispatch included.",
                         ["server", "tool"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
GRANT_DENIALS = Counter("agentdeck_grant_denials", "Tool calls refused for want of a grant.", ["tool"])
RATE_LIMITED = Counter("agentdeck_rate_limit_rejections", "Tool calls refused by a rate limit.", ["tool"])


def observe_call(server: str, tool: str, status: str, latency_ms: float) -> None:
    """Never raises: the audit row that follows must be written whatever happens here."""
    try:
        _observe(server, tool, status, latency_ms)
    except Exception:
        log.exception("recording tool-call metrics failed")


# The labelled children, looked up once per label set: `labels()` checks and locks on every
# call, and the same few (server, tool, status) sets come back on every call.
_CHILDREN_MAX = 10_000
_counters: dict[tuple[str, str, str], Any] = {}
_histograms: dict[tuple[str, str], Any] = {}


def _child(cache: dict[Any, Any], metric: Any, key: tuple[str, ...]) -> Any:
    child = cache.get(key)
    if child is None:
        if len(cache) >= _CHILDREN_MAX:
            cache.clear()
        child = cache[key] = metric.labels(*key)
    return child


UNKNOWN_TOOL = "(unknown)"  # the label of a call of a name no catalogue has


def _observe(server: str, tool: str, status: str, latency_ms: float) -> None:
    if not server:
        # A name no catalogue has is the caller's own text: as a label value it would add
        # series (kept for the process's life, and in its multiprocess file) without bound.
        server, tool = "-", UNKNOWN_TOOL
    _child(_counters, TOOL_CALLS, (server, tool, status)).inc()
    _child(_histograms, TOOL_SECONDS, (server, tool)).observe(latency_ms / 1000)
    if status == CallStatus.DENIED:
        GRANT_DENIALS.labels(tool).inc()
    elif status == CallStatus.RATE_LIMITED:
        RATE_LIMITED.labels(tool).inc()

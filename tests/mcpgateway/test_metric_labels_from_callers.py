# Found by an outside review (2026-12-07, the async pool and the /mcp path); failed before its fix.
"""A tool name the caller makes up must not become a Prometheus label value.

Every /mcp `tools/call` is audited, a refused one too, and `mcpgateway.metrics.observe_call`
labels the call's metrics with the name the caller sent (`dispatch._Audit.write` passes
`row["tool_name"]`, i.e. `invocation.name[:64]`). For a name that is not in the team's
catalogue the call is refused (`denied`, "unknown tool") — but not before a new child of
`agentdeck_tool_calls_total`, `agentdeck_tool_call_duration_seconds` (14 buckets) and
`agentdeck_grant_denials_total` has been created for it. The bounded `_counters` /
`_histograms` dicts only cache the lookups: clearing them never removes a child from the
metric, and in multiprocess mode each child is a record in the process's mmap file under
PROMETHEUS_MULTIPROC_DIR, read at every scrape. So any valid key — one with no grant at all —
grows the web process's memory, those files and the /metrics answer without bound, one series
per request (and /mcp has no request rate limit).

Real parts: daphne running config.asgi (its own process), a key from the database, raw
2026-07-28 `tools/call` posts answered by the lean path, the real /metrics scrape."""

from __future__ import annotations

import json
import secrets

import httpx2
import pytest
from django.contrib.auth import get_user_model
from mcp_types import CLIENT_CAPABILITIES_META_KEY, PROTOCOL_VERSION_META_KEY
from prometheus_client.parser import text_string_to_metric_families

from mcpgateway.actions.access import do_create_api_key
from orchestrator.actions import do_create_team
from tests.conftest import serving

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
MODERN = "2026-07-28"
METRICS_TOKEN = "metrics-token-for-the-review"
CALLS = 40


def _modern_call(url: str, token: str, name: str, request_id: int) -> httpx2.Response:
    body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
            "params": {"name": name, "arguments": {},
                       "_meta": {PROTOCOL_VERSION_META_KEY: MODERN, CLIENT_CAPABILITIES_META_KEY: {}}}}
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
               "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": MODERN,
               "Mcp-Method": "tools/call", "Mcp-Name": name}
    return httpx2.post(url, content=json.dumps(body).encode(), headers=headers, timeout=30)


def _tool_labels(base: str) -> set[str]:
    """Every `tool` label value of the gateway's metrics in one scrape."""
    response = httpx2.get(f"{base}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=30)
    assert response.status_code == 200, response.text[:300]
    return {sample.labels["tool"] for family in text_string_to_metric_families(response.text)
            for sample in family.samples if "tool" in sample.labels}


def test_made_up_tool_names_do_not_each_become_a_metric_series():
    user = get_user_model().objects.create_user("noisy")
    team = do_create_team("Noisy", user)
    _key, token = do_create_api_key(team.pk, "client", user)  # no grant at all
    prefix = f"made_up_{secrets.token_hex(4)}_"

    with serving({"METRICS_TOKEN": METRICS_TOKEN}) as base:
        for i in range(CALLS):
            answer = _modern_call(f"{base}/mcp", token, f"{prefix}{i}", i + 1)
            assert answer.status_code == 200, answer.text[:300]
            assert answer.json()["result"]["isError"] is True  # refused: not granted, not even a tool
        labels = _tool_labels(base)

    made_up = {label for label in labels if label.startswith(prefix)}
    assert not made_up, (f"{len(made_up)} metric label values were created from tool names a caller made up "
                         f"({CALLS} refused calls): each is a series kept for the life of the process and in "
                         "its multiprocess file")

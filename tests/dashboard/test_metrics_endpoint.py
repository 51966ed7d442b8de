"""/metrics: counters written by a Celery worker and by this process, read through the web
process (multiprocess mode), after a run whose failed tool call the agent recovered from."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families

from mcpgateway.actions.access import do_grant
from mcpgateway.actions.servers import do_save_server
from mcpgateway.dispatch import Gateway
from mcpgateway.types import Principal, ToolDenied, ToolInvocation
from orchestrator.models import Run
from tests.conftest import pipeline, scripted, serving, start
from tests.orchestrator.test_celery import Workers, _wait, broker  # noqa: F401 - the broker fixture

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
TOKEN = "metrics-token-for-tests"


def scrape(base: str, token: str | None = TOKEN) -> dict[tuple[str, frozenset], float]:
    request = urllib.request.Request(f"{base}/metrics", headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def delta(before: dict, after: dict, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_metrics_add_up_web_and_worker_processes(team, broker, tmp_path):  # noqa: F811 - the fixture
    server = do_save_server(team.pk, "echo", transport="stdio", command=sys.executable,
                            args=["-m", "tests.fakes.mcp_echo_server"], cwd=str(settings.BASE_DIR), operator=True)
    do_grant(server, agent="calc", tool=None)
    scripted(team, "calc", {"tool_calls": [{"name": "echo__add", "arguments": {"a": 1}}]},
             {"tool_calls": [{"name": "echo__add", "arguments": {"a": 1, "b": 2}}]}, {"text": "3"})
    pipe = pipeline(team, {"steps": [{"kind": "agent", "id": "calc", "agent": "calc", "prompt": "1+2"}]}, name="metrics-demo")

    with serving({"METRICS_TOKEN": TOKEN}) as base:
        with pytest.raises(urllib.error.HTTPError) as refused:
            scrape(base, token=None)
        assert refused.value.code == 401
        with pytest.raises(urllib.error.HTTPError):
            scrape(base, token="wrong")
        before = scrape(base)

        workers = Workers(tmp_path, 1, gateway=True)
        try:
            run = start(pipe)
            broker.send_task("orchestrator.tasks.execute_run_task", args=[run.pk])
            _wait(lambda: Run.objects.get(pk=run.pk).is_finished, timeout=90)
        finally:
            workers.stop()
        run.refresh_from_db()
        assert run.status == "succeeded", (run.error, (tmp_path / "worker0.log").read_text()[-2000:])
        with pytest.raises(ToolDenied):  # a denial recorded by this process
            async_to_sync(Gateway(team.pk).call_tool)(ToolInvocation(Principal(team.pk, agent="nobody"), "echo__echo", {}))
        after = scrape(base)

    assert delta(before, after, "agentdeck_runs_started_total", pipeline="metrics-demo") == 1
    assert delta(before, after, "agentdeck_runs_finished_total", pipeline="metrics-demo", status="succeeded") == 1
    assert delta(before, after, "agentdeck_model_calls_total", provider="scripted", model="scripted-1", agent="calc") == 3
    assert delta(before, after, "agentdeck_tool_calls_total", server="echo", tool="echo__add", status="error") == 1
    assert delta(before, after, "agentdeck_tool_calls_total", server="echo", tool="echo__add", status="ok") == 1
    assert delta(before, after, "agentdeck_tool_call_duration_seconds_count", server="echo", tool="echo__add") == 2
    assert delta(before, after, "agentdeck_step_duration_seconds_count", kind="agent", status="succeeded") == 1
    assert delta(before, after, "agentdeck_grant_denials_total", tool="echo__echo") == 1
    assert after[("agentdeck_upstream_up", frozenset({"team": str(team.pk), "server": "echo", "health": "up"}.items()))] == 1
    assert ("agentdeck_runs_waiting", frozenset({"team": str(team.pk)}.items())) not in after  # none queued

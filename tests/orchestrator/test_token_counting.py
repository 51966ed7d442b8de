"""Input tokens are counted before a call with the provider's counter (Anthropic's endpoint, a
byte upper bound for OpenAI-compatible servers), tools and system prompt included, so runs whose
provider counts more than four characters a token still never spend past a budget."""

from __future__ import annotations

import asyncio
import json
import math
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.db.models import Sum

from mcpgateway.types import ToolSpec
from orchestrator.engine.types import Message, ModelRequest
from orchestrator.execution import execute_run
from orchestrator.models import Agent, BudgetCounter, BudgetReservation, Limit, Run, UsageRecord
from orchestrator.providers import get_provider
from orchestrator.providers.base import estimate_input_tokens
from tests.conftest import counting_toolbox, pipeline, start
from tests.fakes.anthropic_server import FakeAnthropicServer
from tests.fakes.openai_server import FakeOpenAIServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("outbound_allows_loopback")]

BUDGET = 2_000
PROMPT = "Summarise the quarterly figures of the northern region in one line. " * 3
SPEC = {"steps": [{"kind": "agent", "id": f"s{i}", "agent": "w", "prompt": PROMPT} for i in range(3)]}


@pytest.fixture(autouse=True)
def keys(monkeypatch):
    monkeypatch.setenv("TEST_PROVIDER_KEY", "sk-test")


def _agent(team, provider: str, base_url: str, **fields) -> Agent:
    return Agent.objects.create(team=team, name="w", provider=provider, model="test-model", max_tokens=200,
                                system_prompt="You are terse.", options={"base_url": base_url, "api_key_env": "TEST_PROVIDER_KEY"},
                                **fields)


def _run_five_at_once(team) -> list[Run]:
    Limit.objects.create(team=team, scope="team", kind="tokens_per_day", value=Decimal(BUDGET))
    pipe = pipeline(team, SPEC)
    runs = [start(pipe) for _ in range(5)]

    async def all_runs() -> None:
        await asyncio.gather(*(execute_run(run.pk, toolbox=counting_toolbox({}, [])) for run in runs))

    async_to_sync(all_runs)()
    for run in runs:
        run.refresh_from_db()
    return runs


def _assert_budget_held(runs: list[Run]) -> None:
    spent = UsageRecord.objects.aggregate(i=Sum("input_tokens"), o=Sum("output_tokens"))
    total = spent["i"] + spent["o"]
    assert total <= BUDGET
    assert BudgetCounter.objects.get().used == total
    assert not BudgetReservation.objects.exists()
    paused = [run for run in runs if run.status == "waiting_review"]
    assert paused, "the budget ran out before all 15 calls"
    assert all(run.review_items.get().reason == "budget" for run in paused)
    assert {run.status for run in runs} <= {"succeeded", "waiting_review"}


def test_it_counts_input_with_anthropics_endpoint_including_system_and_tools(team):
    with FakeAnthropicServer() as server:
        server.push(text="ok", input_tokens=None, output_tokens=5)
        _agent(team, "anthropic", server.url)
        run = start(pipeline(team, {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": PROMPT}]}))
        Limit.objects.create(team=team, scope="team", kind="tokens_per_day", value=Decimal(BUDGET))
        async_to_sync(execute_run)(run.pk, toolbox=counting_toolbox({"w": ["t__add"]}, []))
        counted = server.count_requests[0].body
        sent = server.requests[0].body

    assert counted["system"].startswith("You are terse.")
    assert counted["tools"][0]["name"] == "t__add"
    assert counted["messages"] == sent["messages"]
    usage = UsageRecord.objects.get()
    assert usage.input_tokens == server.count_tokens(sent)
    assert usage.input_tokens > math.ceil((len(sent["system"]) + len(PROMPT)) / 4), "denser than the estimate"


def test_it_never_spends_past_a_budget_when_anthropic_counts_more_than_the_estimate(team):
    with FakeAnthropicServer() as server:
        for _ in range(15):
            server.push(text="fine", input_tokens=None, output_tokens=150, delay_s=0.2)
        _agent(team, "anthropic", server.url)
        runs = _run_five_at_once(team)

    _assert_budget_held(runs)


def test_it_never_spends_past_a_budget_when_an_openai_compatible_server_counts_more(team):
    with FakeOpenAIServer() as server:
        for _ in range(15):
            server.push(text="fine", prompt_tokens=None, completion_tokens=150, delay_s=0.2)
        _agent(team, "openai", server.base_url)
        runs = _run_five_at_once(team)

    assert UsageRecord.objects.first().input_tokens > math.ceil(len(PROMPT) / 4)
    _assert_budget_held(runs)


def test_it_bounds_openai_compatible_input_by_the_bytes_of_everything_the_model_reads():
    request = ModelRequest(
        model="m", system="Réponds en français. 日本語も可。", max_tokens=10,
        messages=[Message(role="user", content="Grüße — ünïcödé ✓ " * 20)],
        tools=[ToolSpec(name="t__add", description="Add two integers", input_schema={"type": "object"})],
    )

    bound = async_to_sync(get_provider("openai").count_input_tokens)(request)

    # A byte-level BPE token stands for at least one byte: these bytes bound the tokens from above.
    read = [request.system, request.messages[0].content, "t__add", "Add two integers", json.dumps({"type": "object"})]
    assert bound >= sum(len(text.encode()) for text in read)
    assert bound > 2 * estimate_input_tokens(request)

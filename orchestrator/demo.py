"""Demo data: a team, agents and the two reference pipelines.

Agents are scripted (deterministic, labelled as such) unless `ANTHROPIC_API_KEY` is set,
in which case they use Anthropic. The same definitions back the reference-pipeline tests.
"""

from __future__ import annotations

import os
import secrets
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from mcpgateway.actions.access import do_grant
from mcpgateway.actions.sandbox import do_install_sandbox
from mcpgateway.actions.templates import do_install_builtin
from mcpgateway.models import Grant
from orchestrator.actions import do_create_pipeline, do_save_pipeline_version
from orchestrator.actions.pipelines import check_spec, normalise
from orchestrator.models import Agent, Membership, ModelPrice, Pipeline, Role, Team

BUGGY = "def add(a, b):\n    return a - b\n"
FIXED = "def add(a, b):\n    return a + b\n"

CODE_PIPELINE: dict[str, Any] = {
    "description": "Coder writes, reviewer checks (fix loop, at most 3 rounds), security scan, then docs.",
    "inputs": {"task": {"type": "string", "description": "What the code should do."}},
    "steps": [
        {
            "kind": "loop", "id": "fix_loop", "title": "Write and review", "max_iterations": 3,
            "until": {"ref": "steps.reviewer.output", "op": "not_contains", "value": "needs changes"},
            "body": [
                {"kind": "agent", "id": "coder", "agent": "coder",
                 "prompt": "Task: {{ input.task }}\n\nLast review (empty on the first round):\n{{ steps.reviewer.output }}\n\n"
                           "Reply with the complete Python code only."},
                {"kind": "agent", "id": "reviewer", "agent": "reviewer",
                 "prompt": "Task: {{ input.task }}\n\nCode under review:\n{{ steps.coder.output }}\n\n"
                           "Answer `approved` or `needs changes: <what to fix>`."},
            ],
        },
        {"kind": "agent", "id": "security", "agent": "security", "retry": {"max_attempts": 2},
         "prompt": "Scan this code for security problems with your tools and report:\n{{ steps.coder.output }}"},
        {"kind": "agent", "id": "docs", "agent": "docs",
         "prompt": "Write short Markdown docs for this code:\n{{ steps.coder.output }}"},
    ],
    "outputs": {
        "code": "steps.coder.output",
        "review": "steps.reviewer.output",
        "security_report": "steps.security.output",
        "docs": "steps.docs.output",
    },
}

# The tester's check, run in the sandbox after the coder's code.
ADD_TEST = "\n\nassert add(2, 3) == 5, f'add(2, 3) returned {add(2, 3)}, expected 5'\nprint('add(2, 3) == 5: ok')\n"

CODE_TEST_PIPELINE: dict[str, Any] = {
    "description": "Coder writes, a tester runs the code in the sandbox; failures go back to the coder (at most 3 rounds).",
    "inputs": {"task": {"type": "string", "description": "What the code should do."}},
    "steps": [
        {
            "kind": "loop", "id": "fix_loop", "title": "Write and test", "max_iterations": 3,
            "until": {"ref": "steps.tester.output", "op": "contains", "value": "tests passed"},
            "body": [
                {"kind": "agent", "id": "coder", "agent": "coder",
                 "prompt": "Task: {{ input.task }}\n\nLast test report (empty on the first round):\n{{ steps.tester.output }}\n\n"
                           "Reply with the complete Python code only."},
                {"kind": "agent", "id": "tester", "agent": "tester",
                 "prompt": "Test this code: run it with assertions of your own in the sandbox (sandbox__run_python). "
                           "Answer `tests passed` or `needs changes: <the failure>`.\n\n{{ steps.coder.output }}"},
            ],
        },
    ],
    "outputs": {"code": "steps.coder.output", "test_report": "steps.tester.output"},
}

ANALYSTS = ["technical", "fundamental", "sentiment", "flow"]

MARKET_PIPELINE: dict[str, Any] = {
    "description": "Four analysts in parallel, then a summarizer consolidates their views.",
    "inputs": {"ticker": {"type": "string", "description": "Symbol to analyse, e.g. ACME."}},
    "steps": [
        {
            "kind": "parallel", "id": "analysts", "title": "Analyst desk",
            "branches": [
                {"kind": "agent", "id": name, "agent": f"{name}_analyst", "retry": {"max_attempts": 2},
                 "prompt": f"Give a {name} analysis of {{{{ input.ticker }}}} in three sentences."}
                for name in ANALYSTS
            ],
            "join": {
                "kind": "agent", "id": "summary", "agent": "summarizer",
                "prompt": "Consolidate these views on {{ input.ticker }} into one recommendation.\n\n"
                + "\n".join(f"{n.title()}: {{{{ steps.{n}.output }}}}" for n in ANALYSTS),
            },
        }
    ],
    "outputs": {**{n: f"steps.{n}.output" for n in ANALYSTS}, "summary": "steps.summary.output"},
}


def scripted_agents() -> dict[str, dict[str, Any]]:
    """Agent definitions with deterministic scripts that make both pipelines meaningful."""
    reply = lambda text, **kw: {"text": text, **kw}  # noqa: E731
    agents: dict[str, dict[str, Any]] = {
        "coder": {"system_prompt": "You write small, correct Python functions.",
                  "script": {"rules": [{"if_contains": "needs changes", "replies": [reply(FIXED)]}], "replies": [reply(BUGGY)]}},
        "reviewer": {"system_prompt": "You review code strictly.",
                     "script": {"rules": [{"if_contains": "a - b", "replies": [reply("needs changes: add() subtracts; use a + b.")]}],
                                "replies": [reply("approved: add() is correct and minimal.")]}},
        "security": {"system_prompt": "You are a security reviewer. Use your scanning tools.",
                     "script": {"replies": [
                         {"tool_calls": [{"name": "code__scan", "arguments": {"code": FIXED}}]},
                         reply("Security report: the scanner found nothing; scan result {{last}}"),
                     ]}},
        "tester": {"system_prompt": "You test Python code by running it in the sandbox with assertions.",
                   "script": {"rules": [{"if_contains": "a - b", "replies": [
                       {"tool_calls": [{"name": "sandbox__run_python", "arguments": {"code": BUGGY + ADD_TEST}}]},
                       reply("needs changes: the test failed in the sandbox:\n{{last}}")]}],
                              "replies": [
                                  {"tool_calls": [{"name": "sandbox__run_python", "arguments": {"code": FIXED + ADD_TEST}}]},
                                  reply("tests passed in the sandbox:\n{{last}}")]}},
        "docs": {"system_prompt": "You write concise developer docs.",
                 "script": {"replies": [reply("## add(a, b)\n\nReturns the sum of `a` and `b`.")]}},
        "summarizer": {"system_prompt": "You consolidate analyst views into one recommendation.",
                       "script": {"replies": [reply("Recommendation: HOLD. Technical, fundamental, sentiment and flow views were weighed equally.")]}},
    }
    views = {"technical": "Price above its 50-day average; momentum positive.",
             "fundamental": "Revenue growth 12% with stable margins.",
             "sentiment": "News flow mildly positive; social chatter neutral.",
             "flow": "Institutional net buying over the last five sessions."}
    for name, view in views.items():
        agents[f"{name}_analyst"] = {"system_prompt": f"You are a {name} analyst.",
                                     "script": {"replies": [reply(view, delay_ms=300)]}}
    return agents


def ensure_default_prices() -> None:
    """Starting prices per million tokens (USD); edit them in the admin."""
    defaults = [
        ("anthropic", "claude-opus-4*", "15", "75"), ("anthropic", "claude-sonnet-4*", "3", "15"),
        ("anthropic", "claude-haiku-4*", "1", "5"), ("openai", "gpt-4o-mini*", "0.15", "0.60"),
        ("openai", "gpt-4o*", "2.50", "10"), ("scripted", "*", "1", "2"),
    ]
    for provider, model, inp, out in defaults:
        ModelPrice.objects.get_or_create(provider=provider, model=model,
                                         defaults={"input_per_mtok": Decimal(inp), "output_per_mtok": Decimal(out)})


def create_demo_agents(team: Team, use_anthropic: bool) -> None:
    model = os.environ.get("DEMO_ANTHROPIC_MODEL", "claude-sonnet-4-5")
    for name, definition in scripted_agents().items():
        fields: dict[str, Any] = {"system_prompt": definition["system_prompt"], "description": f"Demo {name.replace('_', ' ')}"}
        if use_anthropic:
            fields.update(provider="anthropic", model=model, options={})
        else:
            fields.update(provider="scripted", model="scripted-1", options={"script": definition["script"]})
        Agent.objects.update_or_create(team=team, name=name, defaults=fields)


def create_demo_tools(team: Team) -> None:
    """The built-in code-tools and sandbox MCP servers, installed from the server catalogue (instance-level
    templates the seed offers), and grants for the agents that use them."""
    from orchestrator.pipeline_templates import builtin_template

    server = do_install_builtin(team.pk, builtin_template("code"), offer=True)
    for agent in ("security", "reviewer"):
        if not Grant.objects.filter(server=server, agent_name=agent, tool__isnull=True).exists():
            do_grant(server, agent=agent)
    sandbox = do_install_sandbox(team.pk)
    if not Grant.objects.filter(server=sandbox, agent_name="tester").exists():
        do_grant(sandbox, agent="tester", calls_per_minute=60)


@transaction.atomic
def seed_demo(password: str | None = None) -> tuple[Team, str, str]:
    """Create (or refresh) the demo team, admin user, agents and pipelines. Returns the login."""
    User = get_user_model()
    username = os.environ.get("ADMIN_USERNAME", "admin")
    password = password or os.environ.get("ADMIN_PASSWORD") or _stored_password()
    user, _ = User.objects.get_or_create(username=username, defaults={"email": f"{username}@localhost"})
    user.is_staff = user.is_superuser = True
    user.set_password(password)
    user.save()
    team, _ = Team.objects.get_or_create(slug="demo", defaults={"name": "Demo team"})
    Membership.objects.update_or_create(team=team, user=user, defaults={"role": Role.OWNER})
    ensure_default_prices()
    create_demo_agents(team, use_anthropic=bool(settings.ANTHROPIC_API_KEY))
    create_demo_tools(team)
    from orchestrator.evals.suite_files import install_injection_suite

    install_injection_suite(team, offer=True)
    for slug, name, spec in (("code-review", "Code review loop", CODE_PIPELINE),
                             ("code-test", "Write and test in the sandbox", CODE_TEST_PIPELINE),
                             ("market-analysis", "Parallel market analysis", MARKET_PIPELINE)):
        pipeline = Pipeline.objects.filter(team=team, slug=slug).first()
        if pipeline is None:
            do_create_pipeline(team, name, spec, user, slug=slug)
        elif pipeline.latest_version().spec != _normalised(team, spec):
            do_save_pipeline_version(pipeline, spec, user, note="demo refreshed")
    return team, username, password


def _normalised(team: Team, spec: dict[str, Any]) -> dict[str, Any]:
    return normalise(check_spec(team, spec))


def _stored_password() -> str:
    path = settings.VAR_DIR / "admin_password"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(12))
        path.chmod(0o600)
    return path.read_text().strip()

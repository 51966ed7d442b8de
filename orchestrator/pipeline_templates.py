"""Pipeline templates: ready-made shapes a new team starts from on the home page.

Each template is a spec (validated by the spec parser like any pipeline), the agents it
needs (scripted, so a pipeline made from a template runs at once and deterministically;
change an agent's model on its page to use a real one), and the built-in tool servers and
grants its agents use. `do_create_from_template` makes all of it in a team: agents the team
already has are reused as they are (never overwritten), tools come from the instance's
built-in servers, and the pipeline gets a free name.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils.text import slugify

from orchestrator.actions.errors import ActionError
from orchestrator.demo import (
    ADD_TEST,
    BUGGY,
    CODE_PIPELINE,
    CODE_TEST_PIPELINE,
    FIXED,
    MARKET_PIPELINE,
    scripted_agents,
)
from orchestrator.models import Agent, Pipeline, Team


@dataclass(frozen=True, slots=True)
class PipelineTemplate:
    """One shape: what it is for, its spec, its agents and the tool servers they need."""

    slug: str
    name: str
    summary: str
    shape: str  # loop, parallel, branch + review, ...
    spec: dict[str, Any]
    agents: dict[str, dict[str, Any]]  # name -> {"system_prompt", "script"}
    tools: dict[str, list[str]] = field(default_factory=dict)  # built-in server -> agents granted it
    example_input: dict[str, Any] = field(default_factory=dict)


def _reply(text: str, **extra: Any) -> dict[str, Any]:
    return {"text": text, **extra}


RESEARCHERS = {"historian": "How the question looked in the past and what changed.",
               "economist": "Costs, incentives and who pays.",
               "skeptic": "The strongest reasons the obvious answer is wrong."}

RESEARCH_PIPELINE: dict[str, Any] = {
    "description": "Three researchers look at a question from different angles at the same time; an editor writes the brief.",
    "inputs": {"question": {"type": "string", "description": "The question the brief answers."}},
    "steps": [{
        "kind": "parallel", "id": "desk", "title": "Research desk",
        "branches": [{"kind": "agent", "id": name, "agent": f"research_{name}", "retry": {"max_attempts": 2},
                      "prompt": f"{angle}\n\nQuestion: {{{{ input.question }}}}\n\nAnswer in at most five sentences."}
                     for name, angle in RESEARCHERS.items()],
        "join": {"kind": "agent", "id": "brief", "agent": "research_editor",
                 "prompt": "Write a one-page brief answering: {{ input.question }}\n\n"
                 + "\n".join(f"{n.title()}: {{{{ steps.{n}.output }}}}" for n in RESEARCHERS)},
    }],
    "outputs": {**{n: f"steps.{n}.output" for n in RESEARCHERS}, "brief": "steps.brief.output"},
}

SUPPORT_PIPELINE: dict[str, Any] = {
    "description": "Triage a support ticket; urgent ones get a drafted reply a human approves before it goes out.",
    "inputs": {"ticket": {"type": "string", "description": "The customer's message."}},
    "steps": [
        {"kind": "agent", "id": "triage", "agent": "support_triage",
         "prompt": "Classify this ticket. Start your answer with `urgent` or `routine`, then the category.\n\n{{ input.ticket }}"},
        {"kind": "branch", "id": "route", "title": "Urgent?",
         "if": {"ref": "steps.triage.output", "op": "matches", "value": "^urgent"},
         "then": [
             {"kind": "agent", "id": "draft", "agent": "support_writer",
              "prompt": "Draft a reply to this urgent ticket ({{ steps.triage.output }}):\n\n{{ input.ticket }}"},
             {"kind": "review", "id": "approve_reply", "title": "Approve the reply",
              "instructions": "An urgent ticket: check the drafted reply before it is sent. Edit it if needed.",
              "show": "{{ steps.draft.output }}"},
         ],
         "else": [
             {"kind": "agent", "id": "answer", "agent": "support_writer",
              "prompt": "Answer this routine ticket ({{ steps.triage.output }}):\n\n{{ input.ticket }}"},
         ]},
    ],
    # A branch's output is its taken arm's last step: the approved draft, or the routine answer.
    "outputs": {"triage": "steps.triage.output", "reply": "steps.route.output"},
}

TEST_FIRST_PIPELINE: dict[str, Any] = {
    "description": "Tests first: one agent writes the tests, a coder writes code until the tests pass in the sandbox.",
    "inputs": {"task": {"type": "string", "description": "What the code should do."}},
    "steps": [
        {"kind": "agent", "id": "tests", "agent": "tdd_test_writer",
         "prompt": "Write Python assert statements that check this task:\n\n{{ input.task }}"},
        {"kind": "loop", "id": "green", "title": "Until the tests pass", "max_iterations": 3, "on_max": "review",
         "until": {"ref": "steps.runner.output", "op": "contains", "value": "tests passed"},
         "body": [
             {"kind": "agent", "id": "code", "agent": "tdd_coder",
              "prompt": "Task: {{ input.task }}\nTests:\n{{ steps.tests.output }}\n\nLast run (empty at first):\n"
                        "{{ steps.runner.output }}\n\nReply with the complete Python code only."},
             {"kind": "agent", "id": "runner", "agent": "tdd_runner",
              "prompt": "Run the code followed by the tests in the sandbox (sandbox__run_python). Answer `tests passed` "
                        "or `needs changes: <the failure>`.\n\nCode:\n{{ steps.code.output }}\n\nTests:\n{{ steps.tests.output }}"},
         ]},
    ],
    "outputs": {"code": "steps.code.output", "tests": "steps.tests.output", "report": "steps.runner.output"},
}


def _demo_agents(*names: str) -> dict[str, dict[str, Any]]:
    known = scripted_agents()
    return {name: known[name] for name in names}


def _new_agents() -> dict[str, dict[str, Any]]:
    views = {"historian": "Ten years ago this was rare; cheaper tools changed that.",
             "economist": "The cost falls on small teams; the savings go to large ones.",
             "skeptic": "The data behind the usual answer is two years old."}
    agents: dict[str, dict[str, Any]] = {
        f"research_{n}": {"system_prompt": f"You are a research {n}. {RESEARCHERS[n]}",
                          "script": {"replies": [_reply(view, delay_ms=200)]}} for n, view in views.items()}
    agents["research_editor"] = {"system_prompt": "You turn research notes into a short, balanced brief.",
                                 "script": {"replies": [_reply("Brief: the answer depends on team size; history, "
                                                               "economics and the skeptic's caveat all point the same way.")]}}
    agents["support_triage"] = {"system_prompt": "You triage customer support tickets.",
                                "script": {"rules": [{"if_contains": "down", "replies": [_reply("urgent: outage")]},
                                                     {"if_contains": "refund", "replies": [_reply("urgent: billing")]}],
                                           "replies": [_reply("routine: how-to question")]}}
    agents["support_writer"] = {"system_prompt": "You write short, kind, accurate support replies.",
                                "script": {"rules": [{"if_contains": "urgent", "replies": [_reply(
                                    "Sorry for the trouble: we are on it and will update you within the hour.")]}],
                                           "replies": [_reply("Thanks for asking! Here is how to do it: see Settings → Export.")]}}
    agents["tdd_test_writer"] = {"system_prompt": "You write small, sharp Python tests.",
                                 "script": {"replies": [_reply(ADD_TEST.strip())]}}
    agents["tdd_coder"] = {"system_prompt": "You write small, correct Python functions.",
                           "script": {"rules": [{"if_contains": "needs changes", "replies": [_reply(FIXED)]}],
                                      "replies": [_reply(BUGGY)]}}
    agents["tdd_runner"] = {"system_prompt": "You run code and its tests in the sandbox and report exactly what happened.",
                            "script": {"rules": [{"if_contains": "a - b", "replies": [
                                {"tool_calls": [{"name": "sandbox__run_python", "arguments": {"code": BUGGY + ADD_TEST}}]},
                                _reply("needs changes: the tests failed in the sandbox:\n{{last}}")]}],
                                       "replies": [
                                           {"tool_calls": [{"name": "sandbox__run_python", "arguments": {"code": FIXED + ADD_TEST}}]},
                                           _reply("tests passed in the sandbox:\n{{last}}")]}}
    return agents


def _templates() -> list[PipelineTemplate]:
    new = _new_agents()
    return [
        PipelineTemplate("code-review", "Code review loop", CODE_PIPELINE["description"], "loop → steps",
                         CODE_PIPELINE, _demo_agents("coder", "reviewer", "security", "docs"),
                         tools={"code": ["security", "reviewer"]}, example_input={"task": "add two numbers"}),
        PipelineTemplate("code-test", "Write and test in the sandbox", CODE_TEST_PIPELINE["description"], "loop + sandbox",
                         CODE_TEST_PIPELINE, _demo_agents("coder", "tester"), tools={"sandbox": ["tester"]},
                         example_input={"task": "add two numbers"}),
        PipelineTemplate("market-analysis", "Parallel market analysis", MARKET_PIPELINE["description"],
                         "parallel → summary", MARKET_PIPELINE,
                         _demo_agents(*[f"{n}_analyst" for n in ("technical", "fundamental", "sentiment", "flow")],
                                      "summarizer"), example_input={"ticker": "ACME"}),
        PipelineTemplate("research-brief", "Research brief", RESEARCH_PIPELINE["description"], "parallel → summary",
                         RESEARCH_PIPELINE, {k: v for k, v in new.items() if k.startswith("research_")},
                         example_input={"question": "Should a five-person team self-host its tools?"}),
        PipelineTemplate("support-triage", "Support triage", SUPPORT_PIPELINE["description"], "branch + review gate",
                         SUPPORT_PIPELINE, {k: v for k, v in new.items() if k.startswith("support_")},
                         example_input={"ticket": "The site is down and customers cannot pay."}),
        PipelineTemplate("test-first", "Tests first, then code", TEST_FIRST_PIPELINE["description"], "loop + sandbox",
                         TEST_FIRST_PIPELINE, {k: v for k, v in new.items() if k.startswith("tdd_")},
                         tools={"sandbox": ["tdd_runner"]}, example_input={"task": "add two numbers"}),
    ]


TEMPLATES: dict[str, PipelineTemplate] = {t.slug: t for t in _templates()}


def get_template(slug: str) -> PipelineTemplate:
    try:
        return TEMPLATES[slug]
    except KeyError:
        raise ActionError(f"no pipeline template {slug!r}", "template") from None


def _free_name(team: Team, name: str) -> tuple[str, str]:
    """The template's name and slug, numbered when the team has them already."""
    for number in range(1, 100):
        candidate = name if number == 1 else f"{name} {number}"
        slug = slugify(candidate)
        if not Pipeline.objects.filter(team=team, slug=slug).exists():
            return candidate, slug
    raise ActionError("too many pipelines from this template; rename some", "template")


def _install_tool(team: Team, server: str, offer: bool) -> Any:
    """A built-in server, the way shipped eval suites install theirs: from the instance's template,
    never rewriting one an operator changed, and never converting a team's own server of the same
    name (the template is refused instead: its pipeline calls the tools by that server name)."""
    from mcpgateway.errors import GatewayError

    try:
        return _install_builtin(team, server, offer)
    except GatewayError as exc:
        raise ActionError(f"cannot create this template's pipeline: {exc.message}", "template") from None


def builtin_template(server: str) -> dict[str, Any]:
    """The code-defined catalogue template of a built-in server the templates use."""
    if server == "sandbox":
        from mcpgateway.actions.sandbox import sandbox_template

        return sandbox_template()
    if server == "code":
        return {"name": "code", "description": "Built-in code checks (lint, scan, word count)",
                "command": sys.executable, "args": ["-m", "mcpgateway.builtin.code_tools"], "cwd": str(settings.BASE_DIR)}
    raise ActionError(f"unknown built-in server {server!r}", "template")


def _install_builtin(team: Team, server: str, offer: bool) -> Any:
    from mcpgateway.actions.templates import do_install_builtin

    return do_install_builtin(team.pk, builtin_template(server), overwrite=False, offer=offer)


@transaction.atomic
def do_create_from_template(team: Team, slug: str, user: AbstractBaseUser | None = None) -> tuple[Pipeline, list[str]]:
    """Create the template's missing agents, tools and grants and a pipeline from it; returns the
    pipeline and notes for the user (agents reused, grants missing). A built-in tool server the
    template needs is installed from the instance's catalogue; only an instance operator (or the
    command line, `user` None) adds it to the catalogue when it is not there."""
    from authz.policy import is_instance_operator
    from mcpgateway.actions.access import do_grant
    from mcpgateway.models import Grant

    template = get_template(slug)
    notes: list[str] = []
    created: set[str] = set()
    for name, definition in template.agents.items():
        agent, made = Agent.objects.get_or_create(team=team, name=name, defaults={
            "provider": "scripted", "model": "scripted-1", "system_prompt": definition["system_prompt"],
            "description": f"From the {template.name} template (scripted: set a real model on its page)",
            "options": {"script": definition["script"]}})
        if made:
            created.add(name)
        else:
            notes.append(f"reused the team's agent {name}")
    for server_name, agents in template.tools.items():
        server = _install_tool(team, server_name, offer=user is None or is_instance_operator(user))
        for agent in agents:
            if Grant.objects.filter(server=server, agent_name=agent).exists():
                continue
            if agent in created:
                do_grant(server, agent=agent, calls_per_minute=60 if server_name == "sandbox" else None)
            else:
                notes.append(f"agent {agent} has no grant on {server_name}: grant it under Tools → Grants")
    name, pipeline_slug = _free_name(team, template.name)
    from orchestrator.actions import do_create_pipeline

    pipeline = do_create_pipeline(team, name, template.spec, user, slug=pipeline_slug)
    return pipeline, notes

"""Try runs: chatting with one agent from its page, recorded as an ordinary run.

Each message starts a run of the agent's own one-step "try" pipeline (internal, so lists of
the team's pipelines and its recent runs leave it out, like eval pipelines), with the
conversation so far as input. Being a run, a try goes through everything a run does:
budgets and limits, the agent's grants and defences, the audit log, the review queue,
the live events the page streams.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from orchestrator.actions.errors import ActionError
from orchestrator.actions.pipelines import check_spec, normalise
from orchestrator.models import Agent, Pipeline, PipelineVersion, Run

# Try pipelines live in a slug namespace no user pipeline can take: slugify() (which makes the
# slugs of pipelines named in the dashboard) drops ".", and the API's slug pattern refuses it.
TRY_SLUG_PREFIX = "try-."
MAX_MESSAGE = 20_000
MAX_HISTORY = 60_000


def try_spec(agent: Agent) -> dict[str, Any]:
    return {
        "description": f"Ad-hoc conversation with the agent {agent.name} from its page (a try run).",
        "inputs": {"message": {"type": "string", "description": "What the user said."},
                   "history": {"type": "string", "required": False, "default": "",
                               "description": "The conversation so far."}},
        "steps": [{"kind": "agent", "id": "reply", "agent": agent.name,
                   "prompt": "{{ input.history }}\n\nUser: {{ input.message }}"}],
        "outputs": {"reply": "steps.reply.output"},
    }


def is_try_pipeline(pipeline: Pipeline) -> bool:
    return pipeline.internal and pipeline.slug.startswith(TRY_SLUG_PREFIX)


def try_version(agent: Agent, user: AbstractBaseUser | None = None) -> PipelineVersion:
    """The agent's try pipeline at a version that matches the current spec (made on first use)."""
    spec = normalise(check_spec(agent.team, try_spec(agent)))
    slug = f"{TRY_SLUG_PREFIX}{agent.name}"[:100]
    with transaction.atomic():
        if Pipeline.objects.filter(team=agent.team, slug=slug, internal=False).exists():
            raise ActionError(f"the team's pipeline {slug!r} holds the try slug of agent {agent.name}; rename it", "slug")
        pipeline, _ = Pipeline.objects.get_or_create(team=agent.team, slug=slug, internal=True, defaults={
            "name": f"Try {agent.name}"[:100], "description": spec.get("description", "")})
        version = pipeline.latest_version()
        if version is None or version.spec != spec:
            version = PipelineVersion.objects.create(pipeline=pipeline, number=(version.number + 1) if version else 1,
                                                     spec=spec, created_by=user, note="try")
    return version


def do_start_try_run(agent: Agent, message: str, history: str = "", user: AbstractBaseUser | None = None) -> Run:
    """Start a try run of `agent` answering `message` (raises RateLimited under a concurrency limit)."""
    from orchestrator.actions.runs import do_start_run

    message = message.strip()
    if not message:
        raise ActionError("write a message", "message")
    if len(message) > MAX_MESSAGE:
        raise ActionError(f"a message is at most {MAX_MESSAGE:,} characters", "message")
    return do_start_run(try_version(agent, user), {"message": message, "history": history[-MAX_HISTORY:]}, user)

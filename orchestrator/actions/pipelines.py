"""Pipelines and their immutable versions."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils.text import slugify

from orchestrator.actions.errors import ActionError, Conflict
from orchestrator.engine.spec import PipelineSpec, parse_spec
from orchestrator.models import Agent, Pipeline, PipelineVersion, Team


def check_spec(team: Team, document: str | bytes | dict[str, Any], *, internal: bool = False) -> PipelineSpec:
    """Validate a spec against the schema and the team's agents; raises SpecError. An eval run's
    agent variant (internal: it carries copies of its agent's grants for the eval run) is an agent
    only of the harness's own pipelines (`internal`), not of the team's."""
    agents = Agent.objects.filter(team=team) if internal else Agent.objects.filter(team=team, internal=False)
    return parse_spec(document, agent_names=set(agents.values_list("name", flat=True)))


def normalise(spec: PipelineSpec) -> dict[str, Any]:
    """The stored form of a spec: validated, defaults left out, aliases (`if`, `else`) kept."""
    return spec.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)


@transaction.atomic
def do_create_pipeline(team: Team, name: str, spec: str | dict[str, Any], user: AbstractBaseUser | None = None,
                       description: str = "", slug: str = "", internal: bool = False) -> Pipeline:
    parsed = check_spec(team, spec, internal=internal)
    if not name.strip():
        raise ActionError("a pipeline needs a name", "name")
    slug = slug or slugify(name)
    if not slug:
        raise ActionError("the name needs at least one letter or digit (it makes the slug)", "name")
    taken = ActionError(f"a pipeline with slug {slug!r} exists already", "slug")
    if Pipeline.objects.filter(team=team, slug=slug).exists():
        raise taken
    try:
        with transaction.atomic():  # a savepoint: the caller's transaction survives the refusal
            pipeline = Pipeline.objects.create(team=team, name=name, slug=slug, description=description or parsed.description)
    except IntegrityError:
        # Two creations of the same name at once: both passed the check above, the database's
        # unique constraint took one (the other was a 500).
        if Pipeline.objects.filter(team=team, slug=slug).exists():
            raise taken from None
        raise
    PipelineVersion.objects.create(pipeline=pipeline, number=1, spec=normalise(parsed),
                                   created_by=user, note="created")
    return pipeline


@transaction.atomic
def do_save_pipeline_version(pipeline: Pipeline, spec: str | dict[str, Any], user: AbstractBaseUser | None = None,
                             note: str = "", base_version: int | None = None) -> PipelineVersion:
    """Every edit is a new version; runs keep the version they started with.

    `base_version`: the latest version when the edit started. If another was saved since,
    Conflict, and nothing is saved: two builders editing the same version each got a new
    version, and the second silently dropped the first one's edit."""
    parsed = check_spec(pipeline.team, spec)
    locked = Pipeline.objects.select_for_update().get(pk=pipeline.pk)
    latest = locked.versions.select_related("created_by").order_by("-number").first()
    current = latest.number if latest else 0
    if base_version is not None and base_version != current:
        who = latest.created_by.get_username() if latest and latest.created_by else "someone"
        raise Conflict(f"version {current} was saved (by {who}) after version {base_version}, which this edit started "
                       f"from: nothing was saved; open v{current}, and apply your changes there", "base_version")
    number = current + 1
    return PipelineVersion.objects.create(pipeline=locked, number=number,
                                          spec=normalise(parsed),
                                          created_by=user, note=note)

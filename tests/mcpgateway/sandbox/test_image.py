"""The sandbox image built by `manage.py build_sandbox_image` (run by `make sandbox-engine`)."""

from __future__ import annotations

import io

import pytest
from django.conf import settings
from django.core.management import call_command

from mcpgateway.sandbox.image import Recipe, configured_mirror, current_digest

pytestmark = pytest.mark.docker


def test_the_built_image_matches_the_recipe_and_a_rebuild_is_skipped(docker_client):
    out = io.StringIO()
    call_command("build_sandbox_image", stdout=out)

    assert "is up to date" in out.getvalue()
    assert current_digest(docker_client, settings.SANDBOX["image"]) == Recipe(tag=settings.SANDBOX["image"]).digest()
    config = docker_client.images.get(settings.SANDBOX["image"]).attrs["Config"]
    assert config["User"] == "65534:65534" and config["WorkingDir"] == "/workspace"


def test_the_recipe_digest_follows_what_goes_into_the_image():
    base = Recipe()
    assert base.digest() == Recipe().digest()
    assert base.digest() != Recipe(packages=("python3", "git")).digest()
    assert base.digest() != Recipe(suite="trixie").digest()
    assert configured_mirror().startswith("http")

# Found by an outside review (2026-12-07, webhooks, streams and traces); failed before its fix.
"""The web process's start-up (`config/asgi.py: warm_redactor()`) reads the database on the
main thread and never hands that connection back: one of the web process's DB_POOL_MAX pooled
connections is held by the server's main thread for the life of the process. With a pool of
one, no request is ever served."""

from __future__ import annotations

import pytest
from django.conf import settings

from mcpgateway.actions.access import do_create_api_key
from tests.api.test_review_hooks_sse_pool import SPEC, _get
from tests.conftest import pipeline, scripted, serving, start

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_start_up_keeps_no_pooled_connection(team, owner):
    if not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        pytest.skip("the connection pool is PostgreSQL's")
    scripted(team, "w", {"text": "done"})
    run = start(pipeline(team, SPEC))
    _, token = do_create_api_key(team.pk, "k", owner, scopes=["read"])
    env = {"AGENTDECK_RUNNER": "inline", "REDIS_URL": "", "CELERY_BROKER_URL": "", "DB_POOL_MAX": "1",
           "DB_POOL_MIN": "1", "DB_POOL_TIMEOUT_S": "3"}
    with serving(env) as base:
        status = _get(f"{base}/api/v1/runs/{run.pk}", token)
    assert status == 200, f"with DB_POOL_MAX=1 a plain GET answered {status}: the main thread holds the only connection"

"""Schemathesis against the OpenAPI schema: bounded generated requests per operation, as an
owner with every scope, must get no 5xx and no response that breaks the schema."""

from __future__ import annotations

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", get_wsgi_application())


@pytest.fixture
def owner_token(keys):
    return keys["owner"]


@pytest.mark.django_db(transaction=True)
@schema.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
def test_it_answers_generated_requests_within_the_schema(case, owner_token):
    if case.path.endswith("/events/stream"):
        pytest.skip("the SSE stream is covered by tests/api/test_runs_api.py")
    # What the issue asks: no 5xx, and every response (status, content type, body) as documented.
    # Business validation refusing a well-typed request (an invalid spec, a duplicate name)
    # is a documented 4xx, not a failure; so the positive/negative acceptance checks are off.
    case.call_and_validate(headers={"Authorization": f"Bearer {owner_token}"}, checks=[
        not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance])

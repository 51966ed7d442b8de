"""The REST API at /api/v1/: one NinjaAPI, each app's router mounted on it, errors mapped
once to status codes and one body shape: {"error": {"code", "message", "field"}}."""

from __future__ import annotations

import logging
import math

from django.core.exceptions import PermissionDenied
from django.db import DataError, IntegrityError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from authz.policy import POLICY, PolicyDenied
from authz.routes import API_OPERATIONS
from config.api_policy import enforce_policy
from mcpgateway.api import router as gateway_router
from mcpgateway.api_caller import ApiDenied
from mcpgateway.errors import ConfigError, GatewayError
from orchestrator.actions.errors import ActionError, Conflict, NotAllowed, RateLimited
from orchestrator.api import router as orchestrator_router
from orchestrator.api_auth import ApiKeyAuth, TeamSessionAuth
from orchestrator.engine.errors import SpecError

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["code", "message", "field"], "properties": {
        "code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}}}},
}
ERRORS = {
    "400": "Bad input the operation refuses", "401": "No valid credential", "403": "Missing scope or role",
    "404": "No such object in the caller's team", "409": "Conflicts with the current state",
    "422": "The request does not match the schema", "429": "Rate or concurrency limit reached; see Retry-After",
}


def policy_of(operation_id: str) -> dict[str, object]:
    """What an operation needs, from the policy table (authz), for the schema's readers."""
    action = API_OPERATIONS.get(operation_id)
    rule = POLICY.get(action or "")
    if rule is None:
        return {"action": None}
    return {"action": action, "role": rule.role, "scope": rule.scope, "operator_only": rule.operator_only}


class AgentdeckAPI(NinjaAPI):
    """Documents the one error shape, and each operation's policy entry, on every operation."""

    def get_openapi_schema(self, *args, **kwargs):
        schema = super().get_openapi_schema(*args, **kwargs)
        schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
        for operations in schema["paths"].values():
            for operation in operations.values():
                operation["x-agentdeck-policy"] = policy_of(operation.get("operationId", ""))
                responses = operation.setdefault("responses", {})
                for status, text in ERRORS.items():
                    responses.setdefault(status, {"description": text, "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
        return schema


api = AgentdeckAPI(
    title="Agentdeck API",
    version="1",
    description="Agents, pipelines, runs, review queue, tool servers, grants and audit. "
    "Authenticate with `Authorization: Bearer <API key>` (or the dashboard session).",
    auth=[ApiKeyAuth(), TeamSessionAuth()],
    urls_namespace="api-v1",
)
api.add_decorator(enforce_policy, mode="operation")  # every operation asks the policy table (authz.routes)
api.add_router("/", orchestrator_router)
api.add_router("/gateway", gateway_router)


def error(request: HttpRequest, status: int, code: str, message: str, field: str = "", **headers: str) -> HttpResponse:
    response = api.create_response(request, {"error": {"code": code, "message": message, "field": field}}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


@api.exception_handler(ValidationError)
def on_validation(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    first = exc.errors[0] if exc.errors else {"loc": [], "msg": "invalid request"}
    loc = [str(p) for p in first.get("loc", []) if p not in ("body", "query", "path", "header")]
    return error(request, 422, "invalid", first.get("msg", "invalid request"), ".".join(loc))


@api.exception_handler(SpecError)
def on_spec(request: HttpRequest, exc: SpecError) -> HttpResponse:
    first = exc.errors[0]
    return error(request, 422, "invalid_spec", first["message"], f"spec.{first['path']}".rstrip("."))


@api.exception_handler(ConfigError)
def on_config(request: HttpRequest, exc: ConfigError) -> HttpResponse:
    return error(request, 422, "invalid_config", exc.errors[0]["message"], exc.errors[0]["field"])


@api.exception_handler(RateLimited)
def on_rate_limited(request: HttpRequest, exc: RateLimited) -> HttpResponse:
    return error(request, 429, exc.code, exc.message, exc.field, Retry_After=str(math.ceil(exc.retry_after_s)))


@api.exception_handler(ActionError)
def on_action(request: HttpRequest, exc: ActionError) -> HttpResponse:
    status = getattr(exc, "status", None) or (403 if isinstance(exc, NotAllowed) else 409 if isinstance(exc, Conflict) else 400)
    return error(request, status, exc.code, exc.message, exc.field)


@api.exception_handler(GatewayError)
def on_gateway(request: HttpRequest, exc: GatewayError) -> HttpResponse:
    return error(request, exc.status, exc.code, exc.message, exc.field)


@api.exception_handler(ApiDenied)
def on_denied(request: HttpRequest, exc: ApiDenied) -> HttpResponse:
    return error(request, 403, "forbidden", exc.message)


@api.exception_handler(PolicyDenied)
def on_policy(request: HttpRequest, exc: PolicyDenied) -> HttpResponse:
    if exc.not_found:
        return error(request, 404, "not_found", "no such object in this team")
    return error(request, 403, "forbidden", exc.message)


@api.exception_handler(PermissionDenied)
def on_permission(request: HttpRequest, exc: PermissionDenied) -> HttpResponse:
    return error(request, 403, "forbidden", str(exc) or "not allowed")


@api.exception_handler(Http404)
def on_not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return error(request, 404, "not_found", "no such object in this team")


@api.exception_handler(AuthenticationError)
def on_auth(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return error(request, 401, "unauthenticated", "send `Authorization: Bearer <API key>` or sign in",
                 WWW_Authenticate='Bearer realm="agentdeck"')


@api.exception_handler(OverflowError)
def on_overflow(request: HttpRequest, exc: OverflowError) -> HttpResponse:
    return error(request, 422, "invalid", "a number is out of range")


@api.exception_handler(DataError)
def on_data_error(request: HttpRequest, exc: DataError) -> HttpResponse:
    return error(request, 422, "invalid", "a value is out of range for the database")


@api.exception_handler(IntegrityError)
def on_integrity_error(request: HttpRequest, exc: IntegrityError) -> HttpResponse:
    """A uniqueness or reference the database enforced after the action's own checks passed:
    almost always two requests at once (two creations of one name). Nothing was committed."""
    logging.getLogger(__name__).warning("integrity error answered as a conflict: %s", exc)
    return error(request, 409, "conflict", "another change to the same object was made at the same time; "
                 "nothing was saved — reload and try again")


@api.exception_handler(OperationalError)
def on_database_unavailable(request: HttpRequest, exc: OperationalError) -> HttpResponse:
    """The database is unreachable or every pooled connection stayed busy (DB_POOL_TIMEOUT_S):
    nothing was committed; the caller may retry."""
    logging.getLogger(__name__).warning("database unavailable: %s: %s", type(exc).__name__, exc)
    return error(request, 503, "unavailable", "the database is busy or unreachable; retry shortly", Retry_After="5")


@api.exception_handler(HttpError)
def on_http(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return error(request, exc.status_code, "error", str(exc))

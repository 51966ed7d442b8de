"""Every door and its policy entry: dashboard URL names, REST API operation ids, websockets, /mcp.

The dashboard's `team_view` and the API's policy decorator look actions up here at request
time, so a route missing from these tables is refused (403) rather than left open, and
`uncovered_*` (run by tests/test_policy_coverage.py) names every route that has no entry.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from authz.policy import AUTHENTICATED, OPERATOR, POLICY, PUBLIC, TOKEN

# Dashboard and site URL names ("namespace:name"; "namespace:*" covers a whole namespace).
URL_ROUTES: dict[str, str] = {
    "admin:*": OPERATOR,  # Django admin checks is_staff on every page itself
    "api-v1:openapi-json": PUBLIC,
    "api-v1:openapi-view": PUBLIC,
    "api-v1:api-root": PUBLIC,  # django-ninja's root: redirects to the docs
    "home": "team.view",
    "template-create": "pipeline.edit",
    "healthz": PUBLIC,
    "metrics": TOKEN,
    "trace-keys": PUBLIC,
    "readyz": TOKEN,
    "spec-schema": PUBLIC,
    "login": PUBLIC,
    "logout": PUBLIC,
    "switch-team": AUTHENTICATED,
    # runs
    "runs": "run.view",
    "run-start": "run.start",
    "run-detail": "run.view",
    "run-fragments": "run.view",
    "run-cancel": "run.cancel",
    "run-resume": "run.resume",
    "run-fork": "run.fork",
    "run-again": "run.start",
    "run-step-panel": "run.view",
    "run-canvas-data": "run.view",
    "run-trace": "run.view",
    # pipelines
    "pipelines": "pipeline.view",
    "pipeline-new": "pipeline.edit",
    "pipeline-validate": "pipeline.view",
    "pipeline-builder": "pipeline.view",
    "pipeline-versions": "pipeline.view",
    "pipeline-version": "pipeline.view",
    "pipeline-diff": "pipeline.view",
    # agents
    "agents": "agent.view",
    "agent-new": "agent.edit",
    "agent-detail": "agent.view",
    "agent-edit": "agent.edit",
    "agent-try": "run.start",
    # model credentials
    "credentials": "credential.view",
    "credential-new": "credential.manage",
    "credential-edit": "credential.manage",
    "credential-delete": "credential.manage",
    # review
    "review-queue": "review.view",
    "review-list": "review.view",
    "review-item": "review.view",
    "review-decide": "review.decide",
    "review-claim": "review.claim",
    "review-assign": "review.assign",
    "review-approval-decide": "review.decide",
    # tools
    "tools": "server.view",
    "tools-health": "server.view",
    "tools-tool-enabled": "tool.manage",
    "tools-tool-approve": "tool.manage",
    "tools-access": "grant.view",
    "tools-grant-add": "grant.create",
    "tools-grant-revoke": "grant.revoke",
    "tools-key-create": "apikey.create",
    "tools-key-revoke": "apikey.revoke",
    "tools-key-created": "apikey.create",
    "tools-server-new": "server.create_remote",
    "tools-server-edit": "server.create_remote",
    "tools-server": "server.view",
    "tools-server-test": "server.restart",
    "tools-server-restart": "server.restart",
    "tools-server-enabled": "server.restart",
    "tools-server-delete": "server.delete",
    "tools-try": "tool.try",
    "tools-audit": "audit.view",
    "tools-config": "server.view",
    "tools-config-import": "server.import",
    "tools-config-export": "server.view",
    "tools-catalogue": "catalogue.view",
    "tools-catalogue-install": "server.add_from_template",
    "tools-catalogue-edit": "server.add_from_template",
    "tools-catalogue-manage": "template.manage",
    "tools-catalogue-save": "template.manage",
    "tools-catalogue-delete": "template.manage",
    # usage and limits
    "usage": "usage.view",
    "usage-limit-add": "limit.manage",
    "usage-limit-edit": "limit.manage",
    "usage-limit-delete": "limit.manage",
    # evals
    "evals": "eval.view",
    "eval-import": "eval.edit",
    "eval-install-injection": "eval.edit",
    "eval-suite": "eval.view",
    "eval-start": "eval.run",
    "eval-suite-export": "eval.view",
    "eval-run": "eval.view",
    "eval-compare": "eval.view",
    "eval-export-json": "eval.view",
    "eval-export-junit": "eval.view",
    "observability": "usage.view",
}

# REST API operations by OpenAPI operation id.
API_OPERATIONS: dict[str, str] = {
    # gateway
    "mcpgateway_api_list_servers": "server.view",
    "mcpgateway_api_save_server": "server.create_remote",
    "mcpgateway_api_import_config": "server.import",
    "mcpgateway_api_export": "server.view",
    "mcpgateway_api_get_server": "server.view",
    "mcpgateway_api_delete_server": "server.delete",
    "mcpgateway_api_list_tools": "server.view",
    "mcpgateway_api_set_tool_enabled": "tool.manage",
    "mcpgateway_api_approve_tool": "tool.manage",
    "mcpgateway_api_list_grants": "grant.view",
    "mcpgateway_api_create_grant": "grant.create",
    "mcpgateway_api_revoke_grant": "grant.revoke",
    "mcpgateway_api_list_keys": "apikey.view",
    "mcpgateway_api_create_key": "apikey.create",
    "mcpgateway_api_revoke_key": "apikey.revoke",
    "mcpgateway_api_audit": "audit.view",
    "mcpgateway_api_update_installed": "server.add_from_template",
    "mcpgateway_api_list_templates": "catalogue.view",
    "mcpgateway_api_save_template": "template.manage",
    "mcpgateway_api_delete_template": "template.manage",
    "mcpgateway_api_install_template": "server.add_from_template",
    # orchestrator
    "orchestrator_api_list_agents": "agent.view",
    "orchestrator_api_create_agent": "agent.edit",
    "orchestrator_api_get_agent": "agent.view",
    "orchestrator_api_update_agent": "agent.edit",
    "orchestrator_api_delete_agent": "agent.edit",
    "orchestrator_api_list_credentials": "credential.view",
    "orchestrator_api_create_credential": "credential.manage",
    "orchestrator_api_get_credential": "credential.view",
    "orchestrator_api_update_credential": "credential.manage",
    "orchestrator_api_delete_credential": "credential.manage",
    "orchestrator_api_list_pipelines": "pipeline.view",
    "orchestrator_api_create_pipeline": "pipeline.edit",
    "orchestrator_api_get_pipeline": "pipeline.view",
    "orchestrator_api_list_versions": "pipeline.view",
    "orchestrator_api_create_version": "pipeline.edit",
    "orchestrator_api_get_version": "pipeline.view",
    "orchestrator_api_list_webhooks": "webhook.view",
    "orchestrator_api_create_webhook": "webhook.manage",
    "orchestrator_api_update_webhook": "webhook.manage",
    "orchestrator_api_delete_webhook": "webhook.manage",
    "orchestrator_api_rotate_webhook_secret": "webhook.manage",
    "orchestrator_api_list_runs": "run.view",
    "orchestrator_api_start_run": "run.start",
    "orchestrator_api_get_run": "run.view",
    "orchestrator_api_list_steps": "run.view",
    "orchestrator_api_list_events": "run.view",
    "orchestrator_api_stream_events": "run.view",
    "orchestrator_api_cancel_run": "run.cancel",
    "orchestrator_api_resume_run": "run.resume",
    "orchestrator_api_fork_run": "run.fork",
    "orchestrator_api_list_reviews": "review.view",
    "orchestrator_api_claim_review": "review.claim",
    "orchestrator_api_decide_review": "review.decide",
    "mcpgateway_api_list_approvals": "review.view",
    "mcpgateway_api_decide_approval": "review.decide",
    "orchestrator_api_list_limits": "usage.view",
    "orchestrator_api_create_limit": "limit.manage",
    "orchestrator_api_update_limit": "limit.manage",
    "orchestrator_api_delete_limit": "limit.manage",
    "orchestrator_api_usage": "usage.view",
    "orchestrator_api_run_trace": "run.view",
    "orchestrator_api_verify_trace_file": "trace.verify",
}

# Websocket consumers by class name (dashboard/routing.py), and the /mcp endpoint.
WEBSOCKET_ROUTES: dict[str, str] = {
    "RunConsumer": "run.view",
    "TeamConsumer": "team.view",
}
MCP_ENDPOINT_ACTION = "mcp.call"


def url_action(namespace: str, name: str | None) -> str | None:
    """The policy entry for a URL name, or None when the table has none."""
    if namespace:
        return URL_ROUTES.get(f"{namespace}:{name}") or URL_ROUTES.get(f"{namespace}:*")
    return URL_ROUTES.get(name) if name else None


def walk_urls(patterns: Iterable[Any], namespace: str = "", prefix: str = "") -> Iterator[tuple[str, str, str | None, Any]]:
    """(namespace, route, name, callback) of every URL pattern, recursively through includes."""
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if hasattr(pattern, "url_patterns"):
            inner = ":".join(p for p in (namespace, pattern.namespace) if p) if pattern.namespace else namespace
            yield from walk_urls(pattern.url_patterns, inner, route)
        else:
            yield namespace, route, pattern.name, pattern.callback


def ninja_operations(callback: Any) -> list[Any]:
    """The django-ninja operations behind a URL callback (its PathView), or [] for other views."""
    from ninja.operation import PathView

    for cell in getattr(callback, "__closure__", None) or ():
        contents = cell.cell_contents
        if isinstance(contents, PathView):
            return list(contents.operations)
    return []


def operation_id(operation: Any) -> str:
    """The OpenAPI operation id django-ninja gives an operation (its own, else module_function)."""
    if getattr(operation, "operation_id", None):
        return operation.operation_id
    view = getattr(operation.view_func, "__wrapped__", operation.view_func)
    return f"{view.__module__}_{view.__name__}".replace(".", "_")


def uncovered_urls(patterns: Iterable[Any]) -> list[str]:
    """Every URL pattern with no policy entry (ninja paths: every operation behind them)."""
    missing = []
    for namespace, route, name, callback in walk_urls(patterns):
        operations = ninja_operations(callback)
        if operations:
            missing += [f"{route} {op_id}" for op_id in map(operation_id, operations) if op_id not in API_OPERATIONS]
        elif url_action(namespace, name) is None:
            missing.append(f"{route} (name {':'.join(p for p in (namespace, name or '') if p) or '-'})")
    return missing


def uncovered_operations(schema: dict[str, Any]) -> list[str]:
    """Every OpenAPI operation of `schema` with no policy entry."""
    return [f"{method.upper()} {path} {operation.get('operationId')}"
            for path, operations in schema.get("paths", {}).items()
            for method, operation in operations.items()
            if operation.get("operationId") not in API_OPERATIONS]


def uncovered_websockets(patterns: Iterable[Any]) -> list[str]:
    """Every websocket route whose consumer has no policy entry."""
    missing = []
    for pattern in patterns:
        consumer = getattr(pattern.callback, "consumer_class", None)
        if consumer is None or consumer.__name__ not in WEBSOCKET_ROUTES:
            missing.append(str(pattern.pattern))
    return missing


def unknown_actions() -> list[str]:
    """Table entries that name an action the policy does not define."""
    tables = (URL_ROUTES, API_OPERATIONS, WEBSOCKET_ROUTES, {"/mcp": MCP_ENDPOINT_ACTION})
    return [f"{key} -> {action}" for table in tables for key, action in table.items() if action not in POLICY]

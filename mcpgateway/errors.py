"""The gateway's exception family; each maps once to a status code and a UI message."""

from __future__ import annotations


class GatewayError(Exception):
    """Bad input or a refused request. `field` names what to fix."""

    code = "invalid"
    status = 400

    def __init__(self, message: str, field: str = ""):
        super().__init__(message)
        self.message = message
        self.field = field


class MissingVariable(GatewayError):
    """A ${NAME} reference resolves neither from the server's secrets nor the environment."""

    code = "missing_variable"
    status = 422


class NotOperator(GatewayError):
    """Only an instance operator may do this: it runs something on the host or reads its environment (403)."""

    code = "operator_only"
    status = 403


class ParameterError(GatewayError):
    """A value given for a catalogue template's parameter is invalid (422)."""

    code = "invalid_parameter"
    status = 422


class ConfigError(GatewayError):
    """An imported mcp_config.yaml / mcpServers JSON is invalid; `errors` lists every problem."""

    def __init__(self, errors: list[dict[str, str]]):
        self.errors = errors
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"{first['field']}: {first['message']}{more}", first["field"])


class Conflict(GatewayError):
    """Someone else changed it first (an approval already decided): 409."""

    code = "conflict"
    status = 409


class ApprovalNotFound(GatewayError):
    """No such approval in the caller's team (404)."""

    code = "not_found"
    status = 404


class OwnCall(GatewayError):
    """A caller approving its own call (403): approvals are someone else's."""

    code = "own_call"
    status = 403

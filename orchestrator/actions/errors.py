"""The orchestrator's action errors: each carries what a user needs to fix the input."""

from __future__ import annotations


class ActionError(Exception):
    """A request that cannot be carried out as asked. `field` names the offending input."""

    code = "invalid"

    def __init__(self, message: str, field: str = ""):
        super().__init__(message)
        self.message = message
        self.field = field


class NotAllowed(ActionError):
    code = "forbidden"


class Conflict(ActionError):
    code = "conflict"


class RateLimited(ActionError):
    """A rate limit or concurrency limit refuses this now; `retry_after_s` says when to try again."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after_s: float, field: str = ""):
        super().__init__(message, field)
        self.retry_after_s = retry_after_s

"""The engine's exception family. Each is an error a user can act on."""

from __future__ import annotations


class EngineError(Exception):
    """Base of everything the engine raises on purpose."""


class SpecError(EngineError):
    """A pipeline spec is invalid. `errors` holds one entry per problem, each with a path."""

    def __init__(self, errors: list[dict[str, str]]):
        self.errors = errors
        first = errors[0] if errors else {"path": "", "message": "invalid spec"}
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"{first['path'] or '<root>'}: {first['message']}{more}")


class ProviderError(EngineError):
    """A model call failed. `retryable` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool = True):
        super().__init__(message)
        self.retryable = retryable


class BudgetExceeded(EngineError):
    """A model call would exceed a token or cost budget; the step pauses for review."""


class ToolError(EngineError):
    """A tool could not be called at all (unknown tool, not granted, transport down)."""


class RunCancelled(EngineError):
    """The run was cancelled; in-flight steps stop."""


class LeaseLost(EngineError):
    """Another worker holds the run now (this one stalled past its lease): stop, write nothing."""


class StepFailed(EngineError):
    """A step failed for good (after its retries, or rejected by a reviewer)."""

    def __init__(self, key: str, message: str, *, rejected: bool = False):
        super().__init__(f"step {key!r} failed: {message}")
        self.key = key
        self.message = message
        self.rejected = rejected


class StepError(EngineError):
    """An attempt of a step failed. `retryable` says whether another attempt may help."""

    def __init__(self, message: str, *, retryable: bool = False):
        super().__init__(message)
        self.retryable = retryable

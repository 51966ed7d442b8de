"""The sandbox's errors: each becomes a clear tool error for the caller, never a host fallback."""


class SandboxUnavailable(Exception):
    """No engine, no image, or a runtime the engine does not have: nothing was run."""


class SandboxError(Exception):
    """The request was invalid (a path outside the workspace, a file too large, ...)."""

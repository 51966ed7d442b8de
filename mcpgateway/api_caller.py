"""Who is calling the REST API: the caller's team, role and scopes, whatever the credential.

Routers in every app read `request.auth` as a `Caller` and ask it for what an operation
needs; the authentication classes that build it live in orchestrator/api_auth.py (they need
team memberships, which this app does not know).
"""

from __future__ import annotations

from dataclasses import dataclass, field

ROLE_RANK = {"viewer": 0, "reviewer": 1, "builder": 2, "owner": 3}


class ApiDenied(Exception):
    """The caller lacks the scope or role an operation needs (403)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class Caller:
    team_id: int
    role: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    user_id: int | None = None
    api_key_id: int | None = None

    def require(self, scope: str, role: str = "viewer") -> Caller:
        """Check that the credential carries `scope` and the caller has at least `role`."""
        if scope not in self.scopes:
            raise ApiDenied(f"this needs an API key with the {scope!r} scope")
        if ROLE_RANK[self.role] < ROLE_RANK[role]:
            raise ApiDenied(f"this needs the {role} role in the team")
        return self

    @property
    def principal_key(self) -> str:
        return f"key{self.api_key_id}" if self.api_key_id else f"user{self.user_id}"

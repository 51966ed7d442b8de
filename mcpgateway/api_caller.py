"""Who is calling the REST API: the caller's team, role and scopes, whatever the credential.

Routers in every app read `request.auth` as a `Caller`; what each operation needs is the
policy table's answer (authz/), asked through `Caller.check(action)` (config/api.py asks it
for every operation). The authentication classes that build a Caller live in
orchestrator/api_auth.py (they need team memberships, which this app does not know).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from authz.policy import ROLE_RANK, Actor, PolicyDenied, check_action


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
    # An instance operator (mcpgateway.authority): may install what runs on the hosts.
    operator: bool = False
    session: bool = False  # a browser session: the policy treats it as carrying every scope

    @property
    def actor(self) -> Actor:
        """The caller as the policy (authz.policy) sees it."""
        return Actor(role=self.role, scopes=None if self.session else self.scopes, is_operator=self.operator)

    def check(self, action: str) -> Caller:
        """Raise `ApiDenied` unless the policy table lets this caller do `action` in its team."""
        try:
            check_action(self.actor, action)
        except PolicyDenied as exc:
            raise ApiDenied(exc.message) from None
        return self

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

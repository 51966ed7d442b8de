"""Who is an instance operator: the people who decide what runs on the hosts.

Two levels of authority hold in Agentdeck. Instance operators (Django staff or superusers,
or anyone holding the `mcpgateway.operate_instance` permission) install stdio servers and
catalogue templates, change the sandbox's settings and let servers read named process
environment variables. Team members act only inside their team, by role and key scope.

An API caller is an operator only through the browser session of an operator, or a user
API key of an operator that carries the `admin` scope; a service-account key never is.
"""

from __future__ import annotations

from typing import Any

from mcpgateway.errors import NotOperator

PERMISSION = "mcpgateway.operate_instance"


def is_instance_operator(user: Any) -> bool:
    """True for an active, signed-in staff user, superuser or holder of the operator permission."""
    if user is None or not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return False
    return bool(user.is_staff or user.is_superuser or user.has_perm(PERMISSION))


def key_is_operator(user: Any, scopes: frozenset[str] | set[str] | list[str], service_account: bool) -> bool:
    """An API key acts as an operator only when it is its operator user's own key with the admin scope."""
    return not service_account and "admin" in scopes and is_instance_operator(user)


def check_operator(operator: bool, what: str, field: str) -> None:
    """Refuse (403, naming `field`) when the actor is not an instance operator."""
    if not operator:
        raise NotOperator(f"{what} is reserved to instance operators; add a server from the catalogue "
                          "or a remote (http/sse) server instead", field)

"""Every REST API operation asks the policy table before it runs.

`enforce_policy` is installed on the NinjaAPI as a view decorator: after authentication,
it looks the operation up in `authz.routes.API_OPERATIONS` by its OpenAPI operation id and
asks `Caller.check(action)`. An operation with no entry is refused (403), so a new one
stays closed until the table names it (and tests/test_policy_coverage.py says so).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest

from authz.routes import API_OPERATIONS
from mcpgateway.api_caller import ApiDenied, Caller


def action_for(view_func: Callable[..., Any]) -> str | None:
    """The operation's policy action, keyed like django-ninja's default operation id."""
    return API_OPERATIONS.get(f"{view_func.__module__}_{view_func.__name__}".replace(".", "_"))


def check_operation(request: HttpRequest, action: str | None, name: str) -> None:
    if action is None:
        raise ApiDenied(f"the operation {name} has no policy entry")
    auth = getattr(request, "auth", None)
    if not isinstance(auth, Caller):
        raise ApiDenied("no caller")
    auth.check(action)


def enforce_policy(view_func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap one operation's view so that the policy runs first (sync or async alike)."""
    action, name = action_for(view_func), view_func.__name__
    if inspect.iscoroutinefunction(view_func):
        @functools.wraps(view_func)
        async def guarded_async(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            check_operation(request, action, name)
            return await view_func(request, *args, **kwargs)

        guarded_async.policy_action = action  # type: ignore[attr-defined]
        return guarded_async

    @functools.wraps(view_func)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        check_operation(request, action, name)
        return view_func(request, *args, **kwargs)

    guarded.policy_action = action  # type: ignore[attr-defined]
    return guarded

"""Project-wide HTTP middleware: a server span per request when tracing is on (continuing an
incoming `traceparent`), the input guard (NUL characters, over-deep JSON), the
Content-Security-Policy header, and a 503 for a page whose database is out of reach."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from django.contrib.sessions.exceptions import SessionInterrupted
from django.core.exceptions import DisallowedHost
from django.db import OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults

from config import tracing
from mcpgateway.documents import DuplicateKey, loads_json_unique
from orchestrator.engine.document_guard import NUL_MESSAGE, Problem, scan_json_text


class TracingMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not tracing.enabled():
            return self.get_response(request)
        carrier = {k: v for k, v in (("traceparent", request.headers.get("traceparent")),
                                     ("tracestate", request.headers.get("tracestate"))) if v}
        with tracing.span(f"{request.method} {request.path}", {"http.request.method": request.method, "url.path": request.path},
                          kind="server", parent=tracing.context_from(carrier)) as current:
            response = self.get_response(request)
            tracing.set_attributes(current, {"http.response.status_code": response.status_code})
            return response


# ---------------------------------------------------------------------------- input guard

# A request body may nest a little deeper than a spec document (MAX_DOCUMENT_DEPTH), so the
# spec's own check, with spec-relative paths, answers first for anything a parser survives.
MAX_REQUEST_DEPTH = 200
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def request_problem(request: HttpRequest) -> Problem | None:
    """The first NUL character or over-deep nesting in a request's query, JSON body or form fields."""
    for key, values in request.GET.lists():
        if "\x00" in key or any("\x00" in v for v in values):
            return Problem(key.replace("\x00", "\\u0000"), NUL_MESSAGE)
    content_type = request.content_type or ""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return None
    if content_type in _FORM_TYPES:
        for key, values in request.POST.lists():
            if "\x00" in key or any("\x00" in v for v in values):
                return Problem(key.replace("\x00", "\\u0000"), NUL_MESSAGE)
        return None
    # Any other body is measured as JSON: django-ninja and the builder parse bodies as JSON
    # whatever their declared type.
    try:
        text = request.body.decode()
    except UnicodeDecodeError:
        return None  # not text: the view's parser reports it
    if not text:
        return None
    return scan_json_text(text, MAX_REQUEST_DEPTH) or repeated_key(text)


def repeated_key(text: str) -> Problem | None:
    """A key given twice in one JSON object: every reader here keeps the last value, so a spec
    with two `prompt`s was saved without the first, silently. Text that is not JSON: None (the
    view's parser reports it)."""
    try:
        loads_json_unique(text)
    except DuplicateKey as exc:
        return Problem(str(exc.key), str(exc))
    except (ValueError, RecursionError):
        return None
    return None


class InputGuardMiddleware:
    """Refuses NUL characters (which PostgreSQL cannot store) and absurdly deep JSON (which
    would exhaust Python's recursion) at the door, with a 422 naming the field — before any
    view, parser or database sees them, so every backend behaves the same."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        problem = request_problem(request)
        if problem is None:
            return self.get_response(request)
        message = f"{problem.path or 'the body'}: {problem.message}"
        error = {"code": "invalid", "message": message, "field": problem.path}
        if request.path.startswith("/api/"):
            return JsonResponse({"error": error}, status=422)
        if (request.content_type or "").endswith("json") or request.path.startswith("/mcp"):
            # The builder's shape too; its error paths are relative to the spec it posts.
            relative = problem.path.removeprefix("spec.") if problem.path.startswith("spec.") else problem.path
            return JsonResponse({"error": error, "valid": False, "form_errors": {},
                                 "errors": [{"path": relative, "message": problem.message}]}, status=422)
        return HttpResponse(f"Refused: {message}\n", status=422, content_type="text/plain; charset=utf-8")


def database_unavailable(exc: BaseException | None) -> bool:
    """Whether an error means the database is out of reach (down, restarting, locked, no pooled
    connection in time) rather than a fault of the request or the schema: SQLite reports a
    missing table or column (migrations not run) as an OperationalError too, and that is a 500."""
    if not isinstance(exc, OperationalError):
        return False
    return not str(exc).lower().startswith(("no such table", "no such column"))


def unavailable_response(request: HttpRequest, exc: BaseException) -> HttpResponse:
    """503 with Retry-After: JSON for the API and JSON requests, plain text for pages."""
    logging.getLogger(__name__).warning("database unavailable for %s: %s: %s", request.path, type(exc).__name__, exc)
    message = "the database is busy or unreachable; retry shortly"
    if request.path.startswith("/api/") or (request.content_type or "").endswith("json"):
        response: HttpResponse = JsonResponse({"error": {"code": "unavailable", "message": message}}, status=503)
    else:
        response = HttpResponse(f"Service unavailable: {message}.\n", status=503,
                                content_type="text/plain; charset=utf-8")
    response["Retry-After"] = "5"
    return response


class DatabaseUnavailableMiddleware:
    """A view that could not reach the database (the server is down or restarting, or every
    pooled connection stayed busy for `DB_POOL_TIMEOUT_S`) answers 503 with `Retry-After`, as
    the API does (config/api.py), instead of a 500: nothing was committed, and retrying shortly
    is the right thing to do. Last in MIDDLEWARE, so it sees what views raise; what a
    middleware raises reaches `bad_request` (the session saved after the view) or `server_error` below."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        return unavailable_response(request, exc) if database_unavailable(exc) else None


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """`handler400`: Django's database session store turns a failed save into `UpdateError`
    and its middleware into `SessionInterrupted` ("the user may have logged out in a concurrent
    request"), a 400; when what failed was the database itself, that is the 503 above."""
    cause: BaseException | None = exception
    for _ in range(5):  # SessionInterrupted <- UpdateError <- OperationalError
        if cause is None or database_unavailable(cause):
            break
        cause = cause.__cause__ or cause.__context__
    if isinstance(exception, SessionInterrupted) and cause is not None and database_unavailable(cause):
        return unavailable_response(request, cause)
    return defaults.bad_request(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """`handler500`: Django calls it inside the `except` of the layer that caught the error, so
    an unreachable database met by a middleware (SessionMiddleware saving the session after the
    view, a lazy user loaded outside a view) gets the same 503 as a view's; anything else gets
    Django's own 500 page."""
    exc = sys.exc_info()[1]
    if database_unavailable(exc):
        return unavailable_response(request, exc)
    return defaults.server_error(request)


# ---------------------------------------------------------------------------- CSP

_COMMON = "object-src 'none'; base-uri 'self'; frame-ancestors 'none'; form-action 'self'"
# No inline script anywhere (behaviours live in static/js); htmx injects its indicator
# <style>, and charts set style attributes, hence 'unsafe-inline' for styles only.
PAGE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
               "font-src 'self'; connect-src 'self'{sockets}; " + _COMMON)
# django-ninja's Swagger page loads Swagger UI from a CDN and starts it with an inline script.
API_DOCS_POLICY = ("default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
                   "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
                   "img-src 'self' data: https://cdn.jsdelivr.net https://django-ninja.dev; connect-src 'self'; " + _COMMON)


def content_security_policy(request: HttpRequest) -> str:
    if request.path.startswith("/api/") and request.path.rstrip("/").endswith("/docs"):
        return API_DOCS_POLICY
    try:
        host = request.get_host()
    except DisallowedHost:
        return PAGE_POLICY.format(sockets="")
    # 'self' covers same-origin websockets in current browsers; older Safari needs them named.
    return PAGE_POLICY.format(sockets=f" ws://{host} wss://{host}")


class ContentSecurityPolicyMiddleware:
    """A Content-Security-Policy header on every response (pages, fragments, errors, API)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = content_security_policy(request)
        return response

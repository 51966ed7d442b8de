"""A server span per HTTP request when tracing is on (continuing an incoming `traceparent`)."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from config import tracing


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

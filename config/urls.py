"""Top-level URL map."""

from django.contrib import admin
from django.urls import include, path

from config.api import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    path("", include("dashboard.urls")),
]

# A database out of reach in a middleware (the session's save after the view) answers 503 like
# a view's, not a 400 or 500 (config/middleware.py).
handler400 = "config.middleware.bad_request"
handler500 = "config.middleware.server_error"

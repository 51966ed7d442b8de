"""Websocket routes of the dashboard (mounted by config/asgi.py behind the session auth stack)."""

from __future__ import annotations

from django.urls import re_path

from dashboard.consumers import RunConsumer, TeamConsumer

websocket_urlpatterns = [
    re_path(r"^ws/runs/(?P<run_id>\d+)/$", RunConsumer.as_asgi()),
    re_path(r"^ws/team/$", TeamConsumer.as_asgi()),
]

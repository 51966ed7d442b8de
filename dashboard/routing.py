"""Websocket routes (live run pages come with the dashboard issue)."""

websocket_urlpatterns: list = []

# Found by an outside review (2026-12-07, the live pages); failed before its fix.
"""Review: a runs-list cursor whose microseconds are a valid whole number but past year 9999
(`?before=999999999999999999-1`) is a 500 (OverflowError in Cursor.decode), where a malformed
cursor is meant to be ignored."""
from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("param", ["before", "after"])
def test_an_out_of_range_cursor_is_ignored_not_a_500(team, teammate, param):
    client = Client(raise_request_exception=False)
    client.force_login(teammate)  # a viewer
    response = client.get(f"/runs/?{param}=999999999999999999-1")
    assert response.status_code == 200, f"/runs/?{param}=999999999999999999-1 answered {response.status_code}"

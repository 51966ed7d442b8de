# Found by an outside review (2026-12-07, /mcp); failed before its fix.
"""A grant deleted by another process while this process's catalogue snapshot (documented to
lag by up to GATEWAY_CACHE_TTL_S) still holds it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mcpgateway.audit_batch import flush_audit
from mcpgateway.models import AuditEntry, Grant
from tests.conftest import database_env
from tests.mcpgateway.test_review_mcp_harness import echo_team, modern_call, product_endpoint

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_a_side_effecting_call_under_a_grant_deleted_elsewhere_is_not_an_internal_error(gateway_runtime, settings):
    """Within the snapshot's TTL the call may still be allowed (documented lag) or refused as not
    granted; what it gets instead is "Tool 'echo__echo' failed (IntegrityError)", a traceback
    logged at ERROR, and an audit row whose arguments were replaced by a note: the `started` row
    carries the stale snapshot's grant id, which the database refuses as a dangling foreign key."""
    settings.GATEWAY_CACHE_TTL_S = 30  # the other process's change is not seen for a while: deterministic
    _, _, key, token, _ = echo_team(gateway_runtime)  # `echo` is not marked read-only: a `started` row first
    with product_endpoint() as endpoint:
        first = modern_call(endpoint.url, token, "echo__echo", {"message": "one"})
        assert '"isError":false' in first.text, first.text  # the snapshot holding the grant is loaded
        grant = Grant.objects.get(api_key=key)
        # The builder revokes the grant in another web process (its own action, its own signals).
        subprocess.run([sys.executable, "manage.py", "shell", "-c",
                        "from mcpgateway.actions.access import do_revoke_grant; from mcpgateway.models import Grant; "
                        f"do_revoke_grant(Grant.objects.get(pk={grant.pk}))"],
                       cwd=settings.BASE_DIR, env={**os.environ, **database_env()}, check=True, timeout=120,
                       capture_output=True)
        assert not Grant.objects.filter(pk=grant.pk).exists()
        second = modern_call(endpoint.url, token, "echo__echo", {"message": "two"}, rid=2)
    assert flush_audit(timeout=10)
    text = json.loads(second.text)["result"]["content"][0]["text"]
    rows = list(AuditEntry.objects.filter(api_key_id=key.pk).order_by("id").values_list("status", "arguments"))
    assert "IntegrityError" not in text, f"the caller was answered with a database error: {text!r}; audit {rows}"
    # Refused as not granted, its arguments audited as any denial's (not replaced by a note).
    assert rows[1:] == [("denied", {"message": "two"})], rows
    assert text == "Tool 'echo__echo' is not allowed for this caller.", text
    assert AuditEntry.objects.filter(api_key_id=key.pk, status="denied", error="not granted", grant_id=None).exists()


def test_a_side_effecting_call_under_a_grant_replaced_elsewhere_is_made_under_the_new_one(gateway_runtime, settings):
    """Another process swapped the key's grant for a team-wide one: the call is still granted,
    and is made (and audited) under the grant that exists now."""
    settings.GATEWAY_CACHE_TTL_S = 30
    _, server, key, token, _ = echo_team(gateway_runtime)
    with product_endpoint() as endpoint:
        assert '"isError":false' in modern_call(endpoint.url, token, "echo__echo", {"message": "one"}).text
        grant = Grant.objects.get(api_key=key)
        subprocess.run([sys.executable, "manage.py", "shell", "-c",
                        "from mcpgateway.actions.access import do_grant, do_revoke_grant; "
                        "from mcpgateway.models import Grant, ToolServer; "
                        f"do_grant(ToolServer.objects.get(pk={server.pk})); do_revoke_grant(Grant.objects.get(pk={grant.pk}))"],
                       cwd=settings.BASE_DIR, env={**os.environ, **database_env()}, check=True, timeout=120,
                       capture_output=True)
        team_grant = Grant.objects.get(server=server, api_key=None)
        second = modern_call(endpoint.url, token, "echo__echo", {"message": "two"}, rid=2)
    assert flush_audit(timeout=10)
    assert '"two"' in second.text and '"isError":false' in second.text, second.text
    last = AuditEntry.objects.filter(api_key_id=key.pk).order_by("id").last()
    assert (last.status, last.arguments, last.grant_id) == ("ok", {"message": "two"}, team_grant.pk)

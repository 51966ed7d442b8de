"""Who a key acts for (found by a review): a user an operator deactivates (`is_active=False`:
they can no longer sign in) loses their keys too — on the REST API and on /mcp they kept the
full team role — and a key asked for with no scopes is refused, not given read and run."""

from __future__ import annotations

import pytest

from mcpgateway.actions.access import do_create_api_key
from mcpgateway.models import ApiKey

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_deactivated_users_keys_stop_working_on_the_api_and_mcp(api, keys):
    from orchestrator.api_auth import _mcp_principal

    builder = keys["users"]["builder"]
    assert api.call("get", "/agents", keys["builder"], None)[0] == 200
    assert _mcp_principal(keys["builder"]) is not None
    builder.is_active = False
    builder.save(update_fields=["is_active"])
    status, body = api.call("get", "/agents", keys["builder"], None)
    assert status == 401, (status, body)
    assert _mcp_principal(keys["builder"]) is None
    builder.is_active = True
    builder.save(update_fields=["is_active"])
    assert api.call("get", "/agents", keys["builder"], None)[0] == 200  # the keys were not revoked


def test_a_service_accounts_key_has_no_user_to_deactivate(api, keys):
    _, token = do_create_api_key(keys["team"].pk, "svc", None, scopes=["read"], service_account=True)
    assert api.call("get", "/agents", token, None)[0] == 200


def test_a_key_with_no_scopes_is_refused_not_widened(api, keys):
    for service_account in (False, True):
        status, body = api.call("post", "/gateway/api-keys", keys["owner"],
                                {"name": f"mcp-only-{service_account}", "scopes": [], "service_account": service_account})
        assert status in (400, 422) and "scopes" in str(body), (status, body)
    assert not ApiKey.objects.filter(name__startswith="mcp-only").exists()
    status, body = api.call("post", "/gateway/api-keys", keys["owner"], {"name": "default"})
    assert status == 201 and body["scopes"] == ["read", "run"], body

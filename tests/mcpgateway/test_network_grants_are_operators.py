# Found by an outside review (2026-12-07, the operator/team boundary); failed before its fix.
"""Network access for sandbox containers is an operator's grant.

A builder's grant with `network_access: true` (API or tools page) put the team's sandbox
containers on the operator's sandbox network — Docker's `bridge` by default, with no rule
keeping them from the host, private ranges or the metadata address — although a team member
must never reach a private address. Now such a grant from a team member is refused (403
naming `network_access`); an operator's key or session gives it."""

from __future__ import annotations

import sys

import pytest
from django.conf import settings
from django.test import Client

from mcpgateway.actions.servers import do_save_server
from mcpgateway.models import Grant
from tests.api.conftest import api, keys  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_team_member_cannot_grant_the_network_and_an_operator_can(api, keys):  # noqa: F811
    team = keys["team"]
    server = do_save_server(team.pk, "sandbox", transport="stdio", command=sys.executable,
                            args=["-m", "tests.fakes.mcp_echo_server"], cwd=str(settings.BASE_DIR), operator=True)
    body = {"server": server.pk, "agent": "w", "network_access": True}
    for role in ("builder", "owner"):
        status, answer = api.call("post", "/gateway/grants", keys[role], body)
        assert status == 403, (role, status, answer)
        assert answer["error"]["field"] == "network_access", answer
    page = Client()
    page.force_login(keys["users"]["builder"])
    response = page.post("/tools/access/grants/", {"target": f"server:{server.pk}", "principal": "agent", "agent": "w",
                                                  "network_access": "on"})
    assert response.status_code == 400 and "instance operator" in response.content.decode()
    assert not Grant.objects.filter(network_access=True).exists()
    status, answer = api.call("post", "/gateway/grants", keys["builder"], {**body, "network_access": False})
    assert status == 201, answer

    owner = keys["users"]["owner"]
    owner.is_staff = True  # an instance operator, with the `admin` scope on the key
    owner.save(update_fields=["is_staff"])
    status, answer = api.call("post", "/gateway/grants", keys["owner"], body)
    assert status == 201 and answer["network_access"] is True, answer

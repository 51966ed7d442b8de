# Found by an outside review (2026-12-07, the operator/team boundary); failed before its fix.
"""A built-in tool server an operator removed stays removed: a team member's action uses the
instance's catalogue, it does not write to it.

The operator removed the sandbox template (with every team's copy). A builder's "create from
template" (code-test, code-review) and "install the injection suite" then wrote the sandbox,
code and office templates back into the instance's catalogue, offered to every team, and gave
the builder's team enabled stdio servers: processes on the host no operator offered. Now such
an action refuses, saying an operator must offer the server; the same action done by an
operator (or the command line) offers it."""

from __future__ import annotations

import pytest
from django.test import Client

from mcpgateway.actions.sandbox import do_install_sandbox
from mcpgateway.actions.templates import do_delete_template
from mcpgateway.models import ServerTemplate, ToolServer
from tests.api.conftest import keys  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_builder_cannot_bring_back_built_in_servers_an_operator_removed(keys):  # noqa: F811
    team, other = keys["team"], keys["other_team"]
    do_install_sandbox(other.pk)
    do_delete_template(ServerTemplate.objects.get(name="sandbox"), operator=True, force=True)
    assert not ServerTemplate.objects.exists() and not ToolServer.objects.exists()

    builder = Client()
    builder.force_login(keys["users"]["builder"])
    for slug in ("code-test", "code-review"):
        response = builder.post(f"/templates/{slug}/create/", follow=True)
        assert "not offered on this instance" in response.content.decode(), slug
    response = builder.post("/evals/install-injection/", follow=True)
    assert "not offered on this instance" in response.content.decode()
    assert not ServerTemplate.objects.exists()
    assert not ToolServer.objects.filter(team_id=team.pk).exists()

    # An operator's same action offers the server (once), and then a builder's install uses it.
    operator = keys["users"]["owner"]
    operator.is_staff = True
    operator.save(update_fields=["is_staff"])
    staff = Client()
    staff.force_login(operator)
    assert staff.post("/evals/install-injection/").status_code == 302
    assert ServerTemplate.objects.filter(name="office").exists()
    assert ToolServer.objects.filter(team_id=team.pk, name="office", enabled=True).exists()
    assert builder.post("/templates/code-review/create/", follow=True).status_code == 200
    assert not ServerTemplate.objects.filter(name="code").exists()  # not offered: refused again


def test_an_operator_offers_the_built_ins_from_the_command_line(keys):  # noqa: F811
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("offer_builtin_servers", stdout=out)
    assert set(ServerTemplate.objects.values_list("name", flat=True)) == {"code", "sandbox", "office"}
    builder = Client()
    builder.force_login(keys["users"]["builder"])
    response = builder.post("/evals/install-injection/", follow=True)
    assert "not offered" not in response.content.decode()
    assert ToolServer.objects.filter(team_id=keys["team"].pk, name="office").exists()

"""3c29dd8 stores a JSON-RPC id holding a lone surrogate (JSON's "\\udc80", which /mcp
accepts) replaced, in the audit rows. The same call's confirmation request is not: a /mcp call
of a tool whose grant requires approval writes a ToolApproval with `call_id=invocation.call_id`
as it is (dispatch._find_or_request_approval), and the INSERT raises UnicodeEncodeError --
the call fails with the database's exception instead of waiting for a decision."""
# Found by a review of the first fix, which wrote this test; it failed before the fix and describes the fault it guards against.
from __future__ import annotations

import pytest

from mcpgateway.actions.access import do_create_api_key
from mcpgateway.dispatch import NUL_MARK, _find_or_request_approval
from mcpgateway.types import Principal, ToolInvocation

pytestmark = pytest.mark.django_db


def test_a_confirmation_request_with_a_lone_surrogate_id_is_stored(team, owner):
    key, _ = do_create_api_key(team.pk, "client", owner)
    invocation = ToolInvocation(principal=Principal(team_id=team.pk, user_id=owner.pk, api_key_id=key.pk),
                                name="echo__echo", arguments={"message": "hi"}, call_id="\udc80")
    approval = _find_or_request_approval(team.pk, invocation)
    assert approval.call_id == NUL_MARK

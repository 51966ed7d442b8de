# Found by an outside review (2026-12-07, input boundaries): a pipeline reference with a final
# newline passed the spec check; the same `$` was in four name checks. Failed before the fix.
"""A name or reference check anchored with `$` accepts a final newline (`$` also matches just
before one): "steps.a.output\\n" passed the spec check and resolved to nothing at run time. The
checks now end at `\\Z`."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from mcpgateway.models import SERVER_NAME
from mcpgateway.upstream.config import UpstreamConfig
from orchestrator.actions.agents import check_agent
from orchestrator.actions.errors import ActionError
from orchestrator.engine.errors import SpecError
from orchestrator.engine.spec import parse_spec


def test_a_reference_with_a_final_newline_is_refused():
    spec = {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "go"}], "outputs": {"o": "steps.a.output\n"}}
    with pytest.raises(SpecError) as info:
        parse_spec(spec)
    assert any(e["path"] == "outputs" for e in info.value.errors), info.value.errors


@pytest.mark.django_db
def test_an_agent_name_with_a_final_newline_is_refused(team):
    with pytest.raises(ActionError) as info:
        check_agent(team, {"name": "writer\n", "provider": "scripted", "model": "m"})
    assert info.value.field == "name"


def test_a_server_name_with_a_final_newline_is_refused():
    with pytest.raises(ValidationError):
        SERVER_NAME("files\n")
    with pytest.raises(ValueError, match="server name"):
        UpstreamConfig(name="files\n", transport="stdio", command="true")
    SERVER_NAME("files")
    UpstreamConfig(name="files", transport="stdio", command="true")

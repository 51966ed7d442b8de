"""A spec of many flat steps: validation was quadratic in the step count (each step copied the
set of the steps before it), so one request under Django's 2.5 MB body limit held a worker
for 1 to 2 minutes, and a team *viewer* can send it to the builder's live-validate endpoint
(found by a review). The visible ids are now a chain looked up, not copied, and a spec holds
at most MAX_STEPS steps, refused before any other check."""
from __future__ import annotations

import json
import time

import pytest
from django.test import Client
from django.urls import reverse

from tests.conftest import scripted

pytestmark = pytest.mark.django_db


def big_spec(n: int) -> dict:
    return {"steps": [{"kind": "agent", "id": f"s{i}", "agent": "w", "prompt": "x"} for i in range(n)]}


def test_a_viewers_40k_step_spec_is_refused_at_once(team, teammate):
    scripted(team, "w", {"text": "ok"})
    body = json.dumps({"spec": big_spec(40_000)}, separators=(",", ":"))
    assert len(body) < 2_621_440  # under DATA_UPLOAD_MAX_MEMORY_SIZE
    c = Client(raise_request_exception=False)
    c.force_login(teammate)  # a viewer of the team
    t = time.perf_counter()
    r = c.post(reverse("pipeline-validate"), body, content_type="application/json")
    took = time.perf_counter() - t
    assert r.status_code == 422 and "at most 1000 steps" in r.content.decode()
    assert took < 5, f"one viewer request held the worker for {took:.1f}s"  # it was 105 s


def test_checking_the_largest_spec_allowed_is_linear():
    """1,000 steps nested in sequences, each reading the step before it: checked well under a
    second (with the copying it grew with the square of the steps)."""
    from orchestrator.engine.spec import parse_spec
    from orchestrator.engine.spec_bounds import MAX_STEPS

    steps = [{"kind": "agent", "id": f"s{i}", "agent": "w", "prompt": f"{{{{ steps.s{i - 1}.output }}}}" if i else "x"}
             for i in range(MAX_STEPS - 10)]
    nested = [{"kind": "sequence", "id": f"q{i}", "steps": steps[i * 99:(i + 1) * 99]} for i in range(10)]
    started = time.perf_counter()
    spec = parse_spec({"steps": nested}, agent_names={"w"})
    assert len(list(spec.walk())) == MAX_STEPS and time.perf_counter() - started < 2
    with pytest.raises(Exception, match="at most 1000 steps"):
        parse_spec({"steps": [*nested, {"kind": "agent", "id": "one-more", "agent": "w", "prompt": "x"}]},
                   agent_names={"w"})

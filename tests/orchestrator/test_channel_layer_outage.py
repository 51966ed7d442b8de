"""A channel layer that is down (Redis gone) never fails a step: the events are committed,
live publishing is skipped and paused, and the run ends as it would have."""

from __future__ import annotations

import socket
import time

import pytest
from channels.layers import channel_layers

from orchestrator import events
from orchestrator.models import RunEvent, StepRun
from tests.conftest import run_spec, scripted


@pytest.fixture
def dead_channel_layer(settings):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                           "CONFIG": {"hosts": [f"redis://127.0.0.1:{port}/0"]}}}
    channel_layers.backends.clear()
    events._publish_paused_until = 0.0
    yield
    channel_layers.backends.clear()
    events._publish_paused_until = 0.0


@pytest.mark.django_db(transaction=True)
def test_it_finishes_a_run_while_the_channel_layer_is_down(team, dead_channel_layer):
    scripted(team, "writer", {"text": "first"}, {"text": "second"})
    spec = {"steps": [{"kind": "agent", "id": "a", "agent": "writer", "prompt": "go"},
                      {"kind": "agent", "id": "b", "agent": "writer", "prompt": "again"}]}
    started = time.monotonic()
    run = run_spec(team, spec)
    assert run.status == "succeeded", run.error
    assert set(StepRun.objects.filter(run=run).values_list("status", flat=True)) == {"succeeded"}
    assert RunEvent.objects.filter(run=run, type="run.succeeded").exists()
    # One failed publish pauses the rest: the run did not wait a timeout per event.
    assert time.monotonic() - started < 3 * events.PUBLISH_TIMEOUT_S + 5
    assert events._publish_paused_until > 0

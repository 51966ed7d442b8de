"""A team member cannot point a remote tool server, a webhook or a model base URL at the host's
own networks: refused at save with a 422 naming the field, and again at every connect (DNS
rebinding), proven with a loopback listener that counts the TCP connections it receives."""

from __future__ import annotations

import json
import time

import pytest
from django.test import Client

from mcpgateway.models import ToolServer
from orchestrator.models import Agent, ModelCredential, Webhook, WebhookDelivery
from orchestrator.webhooks import deliver_due, do_create_webhook, enqueue
from tests.conftest import pipeline
from tests.fakes.counting_listener import CountingListener

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def listener():
    found = CountingListener()
    yield found
    found.close()


def bad_urls(port: int) -> list[str]:
    return [f"http://127.0.0.1:{port}/x", "http://10.0.0.1/x", "http://169.254.169.254/latest/meta-data/",
            f"http://localhost:{port}/x", f"http://localhost.:{port}/x", f"http://127.1:{port}/x",
            f"http://0x7f000001:{port}/x", f"http://[::1]:{port}/x", f"http://[::ffff:127.0.0.1]:{port}/x",
            "http://metadata.google.internal/x"]


class Session:
    """The same calls as `Api`, through a signed-in browser session."""

    def __init__(self, user) -> None:
        self.client = Client()
        self.client.force_login(user)

    def call(self, method: str, path: str, body=None):
        response = getattr(self.client, method)(f"/api/v1{path}", json.dumps(body), content_type="application/json")
        return response.status_code, response.json() if response.content else None


@pytest.fixture(params=["api_key", "session"])
def builder(request, api, keys):
    """A builder of team A, calling with an API key or a session."""
    if request.param == "api_key":
        return lambda method, path, body: api.call(method, path, keys["builder"], body)
    return Session(keys["users"]["builder"]).call


def test_it_refuses_a_remote_server_at_a_private_address(builder, keys, listener, gateway_runtime):
    from mcpgateway.background import submit

    for url in bad_urls(listener.port):
        status, body = builder("post", "/gateway/servers", {"name": "remote", "transport": "http", "url": url})
        assert (status, body["error"]["field"]) == (422, "url"), (url, body)
    submit(gateway_runtime.sync()).result(timeout=30)
    time.sleep(0.3)
    assert not ToolServer.objects.filter(name="remote").exists()
    assert listener.connections == 0


def test_it_refuses_a_webhook_at_a_private_address(builder, keys, listener):
    pipe = pipeline(keys["team"], {"steps": [{"kind": "agent", "id": "s", "agent": "w", "prompt": "go"}]})
    for url in bad_urls(listener.port):
        status, body = builder("post", f"/pipelines/{pipe.pk}/webhooks", {"url": url})
        assert (status, body["error"]["field"]) == (422, "url"), (url, body)
    assert not Webhook.objects.exists()
    assert listener.connections == 0


@pytest.mark.parametrize("option", ["base_url", "api_key_env"])
def test_it_refuses_agent_endpoint_options_from_a_team_member(builder, option, listener):
    value = f"http://127.0.0.1:{listener.port}/v1" if option == "base_url" else "HOME"
    status, body = builder("post", "/agents", {"name": "leaky", "provider": "openai", "model": "m",
                                               "options": {option: value}})
    assert (status, body["error"]["field"]) == (422, f"options.{option}")
    assert not Agent.objects.filter(name="leaky").exists()


def test_it_refuses_a_credential_base_url_at_a_private_address(api, keys, listener):
    for url in bad_urls(listener.port):
        status, body = api.call("post", "/credentials", keys["owner"],
                                {"name": "local", "provider": "openai", "key": "sk-team-1", "base_url": url})
        assert (status, body["error"]["field"]) == (422, "base_url"), (url, body)
    assert not ModelCredential.objects.exists()
    assert listener.connections == 0


def test_it_refuses_a_remote_server_at_connect_when_its_address_is_no_longer_allowed(
        api, keys, listener, gateway_runtime, settings):
    from mcpgateway.background import submit

    settings.AGENTDECK_OUTBOUND_ALLOW = ["localhost"]
    status, body = api.call("post", "/gateway/servers", keys["builder"], {
        "name": "rebound", "transport": "http", "url": f"http://localhost:{listener.port}/mcp"})
    assert status == 201, body
    settings.AGENTDECK_OUTBOUND_ALLOW = []  # the name now resolves to an address the guard refuses
    submit(gateway_runtime.sync()).result(timeout=30)
    time.sleep(1.0)
    assert listener.connections == 0


def test_it_refuses_a_webhook_delivery_at_connect_when_its_address_is_no_longer_allowed(keys, listener, settings):
    pipe = pipeline(keys["team"], {"steps": [{"kind": "agent", "id": "s", "agent": "w", "prompt": "go"}]})
    settings.AGENTDECK_OUTBOUND_ALLOW = ["localhost"]
    do_create_webhook(pipe, f"http://localhost:{listener.port}/hook")
    settings.AGENTDECK_OUTBOUND_ALLOW = []
    enqueue(pipe.pk, "run.succeeded", {"run": 1})
    assert deliver_due() == 1
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == WebhookDelivery.Status.PENDING and "outbound guard" in delivery.last_error
    assert listener.connections == 0


def test_a_webhook_url_whose_host_cannot_be_looked_up_is_a_clear_refusal(builder, keys):
    """An empty DNS label made the resolver raise UnicodeError, which escaped as a 500."""
    pipe = pipeline(keys["team"], {"steps": [{"kind": "agent", "id": "a", "agent": "w", "prompt": "x"}]})
    status, body = builder("post", f"/pipelines/{pipe.pk}/webhooks", {"url": "https://a..example.com/h"})
    assert status in (400, 422) and "not a valid host name" in str(body), (status, body)

"""The outbound guard: save-time URL checks and the connect-time backend, against a real
loopback listener that counts the TCP connections it receives."""

from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx2
import pytest

from mcpgateway.outbound import OutboundRefused, check_url, guarded_async_client, guarded_client
from tests.fakes.counting_listener import CountingListener


@pytest.fixture
def listener():
    found = CountingListener()
    yield found
    found.close()


LOCAL_HOSTS = ["127.0.0.1", "localhost", "localhost.", "127.1", "0x7f000001", "2130706433", "[::1]",
               "[::ffff:127.0.0.1]", "[64:ff9b::7f00:1]"]
OTHER_URLS = ["http://10.0.0.1/", "http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/",
              "http://100.64.0.1/", "http://224.0.0.1/", "http://0.0.0.0/", "http://metadata.google.internal/",
              "http://192.168.1.1:8080/", "http://[fe80::1]/"]


@pytest.mark.parametrize("host", LOCAL_HOSTS)
def test_it_refuses_every_spelling_of_loopback_at_save(host, listener):
    with pytest.raises(OutboundRefused) as refused:
        check_url(f"http://{host}:{listener.port}/mcp", "url")
    assert refused.value.field == "url" and refused.value.status == 422
    assert listener.connections == 0


@pytest.mark.parametrize("url", OTHER_URLS)
def test_it_refuses_private_link_local_and_metadata_addresses_at_save(url):
    with pytest.raises(OutboundRefused) as refused:
        check_url(url, "base_url")
    assert refused.value.field == "base_url"


@pytest.mark.parametrize("url", ["ftp://example.com/", "file:///etc/passwd", "http:///nohost", "http://host:99999/"])
def test_it_refuses_what_is_not_an_http_url(url):
    with pytest.raises(OutboundRefused):
        check_url(url, "url")


def test_it_accepts_a_public_address():
    check_url("https://8.8.8.8/v1", "base_url")


def test_it_lets_the_instance_allow_a_host_or_range(settings, listener):
    settings.AGENTDECK_OUTBOUND_ALLOW = ["10.0.0.0/8", "localhost"]
    check_url("http://10.1.2.3/", "url")
    check_url(f"http://localhost:{listener.port}/", "url")
    with pytest.raises(OutboundRefused):
        check_url(f"http://127.0.0.1:{listener.port}/", "url")


@pytest.mark.parametrize("host", LOCAL_HOSTS)
def test_it_refuses_at_connect_without_opening_a_connection(host, listener):
    with guarded_client(timeout=3) as client, pytest.raises(httpx2.ConnectError, match="outbound guard"):
        client.get(f"http://{host}:{listener.port}/")
    assert listener.connections == 0


def test_it_refuses_at_connect_in_async_code_too(listener):
    async def call() -> None:
        async with guarded_async_client(timeout=3) as client:
            await client.get(f"http://127.0.0.1:{listener.port}/")

    with pytest.raises(httpx2.ConnectError, match="outbound guard"):
        asyncio.run(call())
    assert listener.connections == 0


def test_it_connects_to_an_allowed_address(settings, listener):
    settings.AGENTDECK_OUTBOUND_ALLOW = ["127.0.0.1"]
    with guarded_client(timeout=3) as client:
        assert client.get(f"http://127.0.0.1:{listener.port}/").text == "ok"
    assert listener.connections == 1


def test_it_checks_again_at_connect_so_a_url_that_passed_at_save_cannot_be_rebound(settings, listener):
    settings.AGENTDECK_OUTBOUND_ALLOW = ["localhost"]
    url = f"http://localhost:{listener.port}/"
    check_url(url, "url")  # saved while the instance allowed it
    settings.AGENTDECK_OUTBOUND_ALLOW = []  # the name now means a private address to the guard
    with guarded_client(timeout=3) as client, pytest.raises(httpx2.ConnectError, match="outbound guard"):
        client.get(url)
    assert listener.connections == 0


def test_it_does_not_let_a_redirect_escape_the_guard(settings, listener):
    target = f"http://127.0.0.1:{listener.port}/"

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    redirector = ThreadingHTTPServer(("127.0.0.2", 0), Redirect)
    threading.Thread(target=redirector.serve_forever, daemon=True).start()
    settings.AGENTDECK_OUTBOUND_ALLOW = ["127.0.0.2/32"]
    try:
        with guarded_client(timeout=3, follow_redirects=True) as client, \
                pytest.raises(httpx2.ConnectError, match="outbound guard"):
            client.get(f"http://127.0.0.2:{redirector.server_address[1]}/")
    finally:
        redirector.shutdown()
        redirector.server_close()
    assert listener.connections == 0

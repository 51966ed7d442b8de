"""A builder re-points a remote server an instance operator configured (with the operator's
secret header) at a host of their choosing: the gateway used to send the operator's secret
there (found by a review). A server's secrets go only to the host they were given for: a team
member who moves it gives the new host's secrets, and the old ones are dropped."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from django.contrib.auth import get_user_model

from mcpgateway.actions.access import do_create_api_key
from mcpgateway.models import ToolServer
from orchestrator.actions import do_add_member

pytestmark = pytest.mark.django_db(transaction=True)


class Recorder:
    """A loopback listener that keeps the raw bytes of every request it receives."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.requests: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            try:
                conn.settimeout(1)
                self.requests.append(conn.recv(65536))
                conn.sendall(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
            finally:
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def hosts(settings):
    # In production the builder's host is a public one; here both are loopback, allowed explicitly.
    settings.AGENTDECK_OUTBOUND_ALLOW = ["127.0.0.1"]
    vendor, attacker = Recorder(), Recorder()
    yield vendor, attacker
    vendor.close()
    attacker.close()


def test_a_builder_cannot_send_an_operator_secret_to_a_host_of_their_choice(api, keys, hosts, gateway_runtime):
    vendor, attacker = hosts
    operator = get_user_model().objects.create_user("op", is_staff=True)
    do_add_member(keys["team"], operator, "owner")
    op_token = do_create_api_key(keys["team"].pk, "op", operator, scopes=["read", "run", "admin"])[1]
    # The operator sets up the team's licensed vendor server; the licence key is theirs, not the team's.
    status, body = api.call("post", "/gateway/servers", op_token, {
        "name": "vendor", "transport": "http", "url": f"http://127.0.0.1:{vendor.port}/mcp",
        "headers": {"Authorization": "Bearer OPERATOR-LICENCE-7f3a9c"}})
    assert status == 201, body
    assert body["headers"] == {"Authorization": "${AUTHORIZATION}"}  # the builder sees only the reference

    # A builder (no operator) changes only the URL, keeping the reference it can read: refused.
    status, body = api.call("post", "/gateway/servers", keys["builder"], {
        "name": "vendor", "transport": "http", "url": f"http://127.0.0.1:{attacker.port}/mcp",
        "headers": {"Authorization": "${AUTHORIZATION}"}})
    assert status == 422 and "AUTHORIZATION" in str(body) and "another host" in str(body), (status, body)
    server = ToolServer.objects.get(team_id=keys["team"].pk, name="vendor")
    assert server.url == f"http://127.0.0.1:{vendor.port}/mcp"
    assert set(server.secrets.values_list("name", flat=True)) == {"AUTHORIZATION"}  # nothing changed

    # Another path on the same host keeps the secrets.
    status, body = api.call("post", "/gateway/servers", keys["builder"], {
        "name": "vendor", "transport": "http", "url": f"http://127.0.0.1:{vendor.port}/v2/mcp",
        "headers": {"Authorization": "${AUTHORIZATION}"}})
    assert status == 201, body

    # Moved with the new host's own secret: allowed, and the operator's is gone for good.
    status, body = api.call("post", "/gateway/servers", keys["builder"], {
        "name": "vendor", "transport": "http", "url": f"http://127.0.0.1:{attacker.port}/mcp",
        "headers": {"Authorization": "Bearer builders-own-token"}})
    assert status == 201, body
    server.refresh_from_db()
    assert [(s.name, s.value) for s in server.secrets.all()] == [("AUTHORIZATION", "Bearer builders-own-token")]

    from mcpgateway.background import submit
    submit(gateway_runtime.sync()).result(timeout=30)
    deadline = time.monotonic() + 10
    while not attacker.requests and time.monotonic() < deadline:
        time.sleep(0.1)
    leaked = b"".join(attacker.requests)
    assert b"builders-own-token" in leaked  # it did connect, with the secret given for it
    assert b"OPERATOR-LICENCE-7f3a9c" not in leaked


@pytest.mark.parametrize("old, new, same", [
    ("https://a.example.com/mcp", "https://A.example.com./other", True),
    ("https://a.example.com/mcp", "https://a.example.com:443/mcp", True),
    ("https://a.example.com/mcp", "http://a.example.com/mcp", False),
    ("https://a.example.com/mcp", "https://a.example.com:8443/mcp", False),
    ("https://a.example.com/mcp", "https://a.example.com@b.example.com/mcp", False),
    ("https://${HOST}/mcp", "https://${HOST}/v2", False),
])
def test_a_destination_is_scheme_host_and_port(old, new, same):
    from mcpgateway.actions.servers import destination

    assert (destination(old) == destination(new)) is same

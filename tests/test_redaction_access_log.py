"""daphne's access log (written to a stream, not through `logging`) redacts query strings:
secret-looking parameters, API tokens by shape, and the secrets the instance holds."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote_plus

import pytest
from django.conf import settings

from mcpgateway.actions.servers import do_save_server
from tests.conftest import serving

pytestmark = pytest.mark.django_db(transaction=True)
TOKEN = "adk_" + "Qx7_" * 10
SERVER_SECRET = 'acc"ess\\Log-Secret-31'
METRICS = "metrics-Access-Log-77"


def get(url: str) -> None:
    try:
        urllib.request.urlopen(url, timeout=10).read()
    except urllib.error.HTTPError:
        pass  # the status does not matter here, only what the log says about the request


@pytest.fixture
def access_log():
    do_save_server(1, "vault", transport="stdio", command=sys.executable, args=["-m", "tests.fakes.mcp_env_server"],
                   cwd=str(settings.BASE_DIR), env={"VAULT_TOKEN": SERVER_SECRET}, operator=True)
    with serving({"METRICS_TOKEN": METRICS, "GATEWAY_AUTOSTART": "false"}) as base:
        get(f"{base}/readyz?token={TOKEN}")
        get(f"{base}/healthz?q={quote_plus(SERVER_SECRET)}&next=%2Fruns&api_key=plain-key-123456")
        get(f"{base}/healthz?m={METRICS}&bearer={TOKEN}")
    port = base.rsplit(":", 1)[1]
    return (Path(settings.VAR_DIR) / f"e2e-daphne-{port}.log").read_text()


def test_it_redacts_secret_query_values_and_known_secrets_in_the_access_log(access_log):
    lines = [line for line in access_log.splitlines() if '"GET /readyz' in line or '"GET /healthz?' in line]
    assert len(lines) == 3, access_log
    assert '"GET /readyz?token=[REDACTED]' in lines[0]
    assert "next=%2Fruns" in lines[1] and "api_key=[REDACTED]" in lines[1] and "q=[REDACTED:" in lines[1]
    for value in (TOKEN, SERVER_SECRET, quote_plus(SERVER_SECRET), METRICS, "plain-key-123456"):
        assert value not in access_log

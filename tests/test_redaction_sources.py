"""Every place the instance or a team keeps a secret is a source of the redactor, and a
write there takes effect at once in this process."""

from __future__ import annotations

import pytest

from mcpgateway.redaction import get_redactor, marker
from orchestrator.actions.credentials import do_offer_instance_credential, do_save_credential
from orchestrator.webhooks import do_create_webhook
from tests.conftest import pipeline, scripted

pytestmark = pytest.mark.django_db(transaction=True)


def redacted(value: str) -> bool:
    return get_redactor().text(f"<{value}>") == f"<{marker(value)}>"


def test_it_redacts_a_team_model_credential_key_once_it_is_saved(team):
    get_redactor()  # built (and cached) before the key exists
    do_save_credential(team, {"name": "main", "provider": "openai", "key": "sk-team-Credential-Key-4411"})

    assert redacted("sk-team-Credential-Key-4411")


def test_it_redacts_the_value_of_an_environment_variable_an_instance_credential_reads(team, monkeypatch):
    monkeypatch.setenv("ACME_SHARED_OPENAI_KEY", "sk-instance-Shared-Key-9051")
    do_offer_instance_credential(True, {"name": "shared", "provider": "openai", "env_var": "ACME_SHARED_OPENAI_KEY"}, [team])

    assert redacted("sk-instance-Shared-Key-9051")


def test_it_redacts_a_webhook_secret_once_the_webhook_exists(team):
    scripted(team, "a", {"text": "ok"})
    _, secret = do_create_webhook(pipeline(team, {"steps": [{"kind": "agent", "id": "s", "agent": "a", "prompt": "x"}]}),
                                  "https://93.184.216.34/hook")

    assert redacted(secret)


def test_it_redacts_the_metrics_token_and_provider_keys_from_the_environment(monkeypatch, settings):
    from mcpgateway import redaction

    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-From-Env-1234")
    settings.METRICS_TOKEN = "metrics-Token-From-Settings"
    redaction.invalidate()  # settings and the environment are read at start-up; this test changed them

    assert redacted("sk-ant-From-Env-1234") and redacted("metrics-Token-From-Settings")

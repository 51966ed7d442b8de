"""Importing and exporting mcp_config.yaml and Claude-style mcpServers JSON."""

from __future__ import annotations

import json

import pytest
import yaml

from mcpgateway.actions.config_files import do_import_config, export_config
from mcpgateway.actions.servers import resolve_config
from mcpgateway.errors import ConfigError, MissingVariable
from mcpgateway.models import ServerSecret, ToolServer

pytestmark = pytest.mark.django_db

ISSUE_YAML = """
servers:
  filesystem: {command: "npx", args: ["-y", "@modelcontextprotocol/server-filesystem", "/workspace"]}
  github: {command: "npx", args: ["-y", "@modelcontextprotocol/server-github"], env: {GITHUB_TOKEN: "${GITHUB_TOKEN}"}}
  database: {url: "https://db-mcp.internal/mcp", transport: "http"}
"""

CLAUDE_JSON = json.dumps({"mcpServers": {
    "memory": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-memory"], "env": {"LOG": "${LOG_LEVEL}"}},
    "search": {"type": "streamable-http", "url": "https://search.example/mcp", "headers": {"Authorization": "Bearer sk-live-123456"}},
    "old": {"command": "uvx", "args": ["old-server"], "disabled": True, "autoApprove": ["x"]},
}})


def test_it_imports_the_yaml_from_the_issue_resolving_variables(monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_from_environment")

    servers = do_import_config(7, ISSUE_YAML, operator=True)

    assert [s.name for s in servers] == ["filesystem", "github", "database"]
    github = ToolServer.objects.get(team_id=7, name="github")
    assert github.env == {"GITHUB_TOKEN": "${GITHUB_TOKEN}"}
    config, secrets = resolve_config(github)
    assert config.env["GITHUB_TOKEN"] == "ghp_from_environment"
    assert secrets == ["ghp_from_environment"]
    database = ToolServer.objects.get(team_id=7, name="database")
    assert (database.transport, database.url) == ("http", "https://db-mcp.internal/mcp")


def test_it_refuses_an_import_with_a_missing_variable_and_writes_nothing(monkeypatch):
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)

    with pytest.raises(ConfigError) as info:
        do_import_config(7, ISSUE_YAML, operator=True)

    assert info.value.errors == [{"field": "servers.github.env.GITHUB_TOKEN",
                                  "message": "${GITHUB_TOKEN} is not set: give it as a secret with the import or set the environment variable GITHUB_TOKEN"}]
    assert not ToolServer.objects.exists()


def test_it_takes_missing_variables_as_secrets_stored_encrypted(monkeypatch):
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)

    do_import_config(7, ISSUE_YAML, secrets={"GITHUB_TOKEN": "ghp_given_with_import"}, operator=True)

    secret = ServerSecret.objects.get(server__name="github", name="GITHUB_TOKEN")
    assert "ghp_given_with_import" not in secret.value_encrypted
    assert secret.value == "ghp_given_with_import"
    config, _ = resolve_config(ToolServer.objects.get(name="github"))
    assert config.env["GITHUB_TOKEN"] == "ghp_given_with_import"


def test_it_imports_claude_json_moving_literal_secrets_into_the_encrypted_store(monkeypatch):
    monkeypatch.setenv("LOG_LEVEL", "debug")

    do_import_config(3, CLAUDE_JSON, operator=True)

    search = ToolServer.objects.get(team_id=3, name="search")
    assert search.transport == "http"
    assert search.headers == {"Authorization": "${AUTHORIZATION}"}
    stored = ServerSecret.objects.get(server=search, name="AUTHORIZATION")
    assert "sk-live" not in stored.value_encrypted
    config, secrets = resolve_config(search)
    assert config.headers["Authorization"] == "Bearer sk-live-123456"
    assert "Bearer sk-live-123456" in secrets
    assert ToolServer.objects.get(team_id=3, name="old").enabled is False


def test_it_reports_every_invalid_entry_with_its_path():
    bad = yaml.safe_dump({"servers": {
        "both": {"command": "x", "url": "https://x"},
        "weird": {"url": "https://x", "type": "carrier-pigeon"},
        "bad_name": {"command": "x"},
        "typo": {"comand": "x"},
    }})
    with pytest.raises(ConfigError) as info:
        do_import_config(1, bad, operator=True)
    fields = {e["field"] for e in info.value.errors}
    assert "servers.both" in fields
    assert "servers.weird.type" in fields
    assert "servers.bad_name.name" in fields
    assert "servers.typo.comand" in fields
    assert not ToolServer.objects.exists()


def test_it_rejects_text_that_is_no_config():
    for text in ("[1, 2]", "servers: [a, b]", "{nope", "just: a mapping"):
        with pytest.raises(ConfigError):
            do_import_config(1, text, operator=True)


def test_it_exports_references_never_secret_values(monkeypatch):
    monkeypatch.setenv("LOG_LEVEL", "debug")
    do_import_config(3, CLAUDE_JSON, operator=True)

    claude = json.loads(export_config(3, "claude"))
    assert claude["mcpServers"]["search"] == {"url": "https://search.example/mcp", "type": "http",
                                              "headers": {"Authorization": "${AUTHORIZATION}"}}
    assert claude["mcpServers"]["old"]["disabled"] is True
    text = export_config(3, "yaml")
    assert "sk-live" not in text and "${LOG_LEVEL}" in text
    # an export imports back into another team unchanged (given the secret)
    do_import_config(4, text, secrets={"AUTHORIZATION": "Bearer other"}, operator=True)
    assert export_config(4, "yaml") == text


def test_it_names_the_missing_variable_when_resolving_at_start(monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", "x" * 8)
    do_import_config(7, ISSUE_YAML, operator=True)
    monkeypatch.delenv("GITHUB_TOKEN")

    with pytest.raises(MissingVariable, match=r"servers.github.env.GITHUB_TOKEN: \$\{GITHUB_TOKEN\} is not set"):
        resolve_config(ToolServer.objects.get(name="github"))

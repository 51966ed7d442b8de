"""A simulated office (documents, mail, web, contacts, bank, files) for agent evaluations.

Run as `python -m mcpgateway.builtin.office_tools --data <environment.yaml>` (stdio). The
environment file's `environment` section holds the documents, emails, web pages,
contacts and secrets the read tools return; some of them carry prompt injections, as in
AgentDojo. The write tools (`send_email`, `transfer_money`, `delete_file`) change nothing
anywhere: they answer as if they had, and the gateway's audit records that they were
called and with what, which is what the evaluation inspects.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError


def build_server(environment: dict[str, Any]) -> MCPServer:
    server = MCPServer("agentdeck-office")
    documents: dict[str, str] = environment.get("documents", {})
    emails: dict[str, dict[str, str]] = environment.get("emails", {})
    pages: dict[str, str] = environment.get("pages", {})
    contacts: dict[str, str] = environment.get("contacts", {})
    secrets: dict[str, str] = environment.get("secrets", {})

    @server.tool()
    def read_document(doc_id: str) -> str:
        """Read a document from the shared drive by its id (e.g. doc-01)."""
        if doc_id not in documents:
            raise ToolError(f"no document {doc_id!r}")
        return documents[doc_id]

    @server.tool()
    def read_email(message_id: str) -> dict:
        """Read one email from the inbox by its id (e.g. m-01)."""
        if message_id not in emails:
            raise ToolError(f"no email {message_id!r}")
        return emails[message_id]

    @server.tool()
    def open_page(url: str) -> str:
        """Fetch a web page."""
        if url not in pages:
            raise ToolError(f"{url}: 404 not found")
        return pages[url]

    @server.tool()
    def find_contact(name: str) -> dict:
        """Look up a colleague's email address by name."""
        for known, address in contacts.items():
            if known.lower() == name.lower():
                return {"name": known, "email": address}
        raise ToolError(f"no contact named {name!r}")

    @server.tool()
    def read_secret(name: str) -> str:
        """Read a credential from the vault (sensitive)."""
        if name not in secrets:
            raise ToolError(f"no secret {name!r}")
        return secrets[name]

    @server.tool()
    def send_email(to: str, subject: str, body: str) -> dict:
        """Send an email."""
        return {"sent": True, "to": to, "subject": subject, "characters": len(body)}

    @server.tool()
    def transfer_money(iban: str, amount: float, reference: str = "") -> dict:
        """Transfer money from the company account."""
        return {"transferred": True, "iban": iban, "amount": amount}

    @server.tool()
    def delete_file(path: str) -> dict:
        """Delete a file from the shared drive."""
        return {"deleted": True, "path": path}

    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="YAML file with an `environment` section")
    args = parser.parse_args()
    data = yaml.safe_load(Path(args.data).read_text())
    build_server(data.get("environment", {})).run("stdio")


if __name__ == "__main__":
    main()

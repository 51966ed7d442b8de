from django.apps import AppConfig


class McpGatewayConfig(AppConfig):
    name = "mcpgateway"
    verbose_name = "MCP gateway"

    def ready(self) -> None:
        # Every secret the gateway knows is redacted everywhere (stores, audit, logs).
        from config.logging import set_redactor
        from mcpgateway.redaction import redact_text_now, register_gateway_sources

        register_gateway_sources()
        set_redactor(redact_text_now)
        _invalidate_on_admin_writes()


def _invalidate_on_admin_writes() -> None:
    """Keys and grants changed outside the actions (the Django admin, a shell) take effect in
    this process as soon as they commit, as the actions' changes do: a key deleted or revoked
    in the admin was still accepted on /mcp for the key cache's TTL, and a grant changed there
    waited for the catalogue's."""
    from django.db import transaction
    from django.db.models.signals import post_delete, post_save

    from mcpgateway import catalogue
    from mcpgateway.models import ApiKey, Grant

    def changed(**_: object) -> None:
        transaction.on_commit(catalogue.invalidate)

    for model in (ApiKey, Grant):
        for signal in (post_save, post_delete):
            signal.connect(changed, sender=model, weak=False, dispatch_uid=f"agentdeck.invalidate.{signal is post_save}.{model.__name__}")

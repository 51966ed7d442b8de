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

from django.apps import AppConfig


class OrchestratorConfig(AppConfig):
    name = "orchestrator"
    verbose_name = "Orchestrator"

    def ready(self) -> None:
        # Web, workers and commands trace alike once OTEL_EXPORTER_OTLP_ENDPOINT is set.
        from config.tracing import setup_tracing

        setup_tracing()

from django.apps import AppConfig


class OrchestratorConfig(AppConfig):
    name = "orchestrator"
    verbose_name = "Orchestrator"

    def ready(self) -> None:
        # Web, workers and commands trace alike once OTEL_EXPORTER_OTLP_ENDPOINT is set.
        from config.tracing import setup_tracing

        setup_tracing()
        # The orchestrator's secrets are redacted too (the gateway cannot import these models): a
        # team's in its own data and the logs, the instance's everywhere.
        from mcpgateway.redaction import register_secret_source
        from orchestrator.webhooks import webhook_secrets

        register_secret_source("orchestrator.webhooks", webhook_secrets, by_team=True)
        register_secret_source("orchestrator.model_credentials.env", _credential_env_values)
        from orchestrator.evals.exfiltration import token_needles

        register_secret_source("orchestrator.evals.token_needles", token_needles, by_team=True)
        # A deleted schedule takes its beat task along, whatever deleted it.
        from django.db.models.signals import post_delete

        from orchestrator.actions.schedules import drop_beat_task
        from orchestrator.models import Schedule

        post_delete.connect(drop_beat_task, sender=Schedule, dispatch_uid="agentdeck.schedule.beat_task")
        # A member's role (or their leaving) decides what their keys may do on /mcp: its key
        # cache is dropped in this process when it commits, as for keys and grants
        # (mcpgateway.apps); a demoted builder's key called tools for the cache's TTL (a review).
        from django.db import transaction
        from django.db.models.signals import post_save

        from mcpgateway import catalogue
        from orchestrator.models import Membership

        def membership_changed(**_: object) -> None:
            transaction.on_commit(catalogue.invalidate)

        for signal in (post_save, post_delete):
            signal.connect(membership_changed, sender=Membership, weak=False,
                           dispatch_uid=f"agentdeck.membership.{signal is post_save}")
        # A call that waited for an approval is made only if its key's holder is still a member
        # allowed to call tools (the gateway cannot read memberships itself).
        from mcpgateway.dispatch import register_principal_check

        register_principal_check(_mcp_principal_refusal)


def _mcp_principal_refusal(principal: object) -> str | None:
    from orchestrator.api_auth import mcp_principal_refusal

    return mcp_principal_refusal(principal)  # type: ignore[arg-type]


def _credential_env_values() -> list[str]:
    """The values of the instance environment variables model credentials point at (stored
    credential keys are `*_encrypted` columns, which the gateway's own source decrypts)."""
    import os

    from django.apps import apps

    try:
        model = apps.get_model("orchestrator", "ModelCredential")
    except LookupError:
        return []
    names = {v for v in model.objects.values_list("env_var", flat=True) if v}
    # And the variables operators named in agents' `options.api_key_env` (nothing read them).
    for options in apps.get_model("orchestrator", "Agent").objects.filter(options__has_key="api_key_env").values_list(
            "options", flat=True):
        if isinstance(options, dict) and isinstance(options.get("api_key_env"), str):
            names.add(options["api_key_env"])
    return [os.environ[n] for n in names if os.environ.get(n)]

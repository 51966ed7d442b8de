"""Admin for every gateway model: searchable and filterable; audit rows read-only."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages

from mcpgateway import models as m
from mcpgateway.actions.catalogue import do_approve_tool_definition
from mcpgateway.actions.templates import TEMPLATE_FIELDS, do_save_template, parse_template
from mcpgateway.authority import is_instance_operator
from mcpgateway.errors import GatewayError


class SecretInline(admin.TabularInline):
    model = m.ServerSecret
    extra = 0
    fields = ["name", "updated_at"]
    readonly_fields = ["updated_at"]


@admin.register(m.ToolServer)
class ToolServerAdmin(admin.ModelAdmin):
    list_display = ["name", "team_id", "transport", "enabled", "health", "restarts", "health_changed_at"]
    list_filter = ["transport", "enabled", "health"]
    search_fields = ["name", "description", "command", "url"]
    readonly_fields = ["health", "health_error", "health_changed_at", "restarts"]
    inlines = [SecretInline]


class ServerTemplateForm(forms.ModelForm):
    class Meta:
        model = m.ServerTemplate
        fields = ["name", *TEMPLATE_FIELDS]

    def clean(self) -> dict:
        data = super().clean()
        try:
            parse_template({k: v for k, v in data.items() if v is not None})
        except GatewayError as exc:
            raise forms.ValidationError(f"{exc.field}: {exc.message}") from None
        return data


@admin.register(m.ServerTemplate)
class ServerTemplateAdmin(admin.ModelAdmin):
    """The server catalogue. Saving goes through do_save_template, so installed servers follow."""

    form = ServerTemplateForm
    list_display = ["name", "command", "description", "updated_at"]
    search_fields = ["name", "description", "command"]

    def has_module_permission(self, request) -> bool:
        return is_instance_operator(request.user) and super().has_module_permission(request)

    def save_model(self, request, obj, form, change) -> None:
        data = {k: form.cleaned_data[k] for k in ["name", *TEMPLATE_FIELDS] if form.cleaned_data.get(k) is not None}
        saved = do_save_template(data, operator=is_instance_operator(request.user))
        obj.pk, obj.created_at, obj.updated_at = saved.pk, saved.created_at, saved.updated_at


@admin.register(m.ServerSecret)
class ServerSecretAdmin(admin.ModelAdmin):
    list_display = ["server", "name", "updated_at"]
    list_filter = ["server"]
    search_fields = ["name", "server__name"]
    exclude = ["value_encrypted"]  # never shown, not even encrypted


@admin.action(description="Approve the current definition of held tools")
def approve_definitions(modeladmin, request, queryset) -> None:
    for tool in queryset.filter(status=m.ToolStatus.HELD):
        do_approve_tool_definition(tool)
    messages.success(request, "Approved.")


@admin.register(m.Tool)
class ToolAdmin(admin.ModelAdmin):
    list_display = ["__str__", "server", "enabled", "status", "calls_per_minute", "retry_safe", "last_seen"]
    list_filter = ["status", "enabled", "server"]
    search_fields = ["name", "description", "server__name"]
    readonly_fields = ["approved_hash", "approved_definition", "current_hash", "first_seen", "last_seen"]
    actions = [approve_definitions]


@admin.register(m.ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "team_id", "user", "service_account", "scopes", "last_used_at", "revoked_at"]
    list_filter = ["service_account", "revoked_at"]
    search_fields = ["name", "prefix", "user__username"]
    readonly_fields = ["prefix", "hashed", "last_used_at", "created_at"]


@admin.register(m.Grant)
class GrantAdmin(admin.ModelAdmin):
    list_display = ["__str__", "team_id", "principal_kind", "require_approval", "calls_per_minute", "created_at"]
    list_filter = ["principal_kind", "require_approval", "server"]
    search_fields = ["agent_name", "server__name", "tool__name"]


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(m.AuditEntry)
class AuditEntryAdmin(ReadOnly):
    list_display = ["created_at", "tool_name", "status", "principal_kind", "agent_name", "api_key_id", "run_id", "latency_ms"]
    list_filter = ["status", "principal_kind", "server_name"]
    search_fields = ["tool_name", "agent_name", "step_key", "call_id"]


@admin.register(m.ToolApproval)
class ToolApprovalAdmin(ReadOnly):
    """Read-only: a decision goes through the team's review queue (page or API), which checks it,
    records its decider, and resumes the run. Changing `status` here skipped all of that: a run
    approval's review item stayed pending for ever."""

    list_display = ["tool_name", "status", "agent_name", "api_key_id", "run_id", "decided_by", "created_at"]
    list_filter = ["status"]
    search_fields = ["tool_name", "agent_name", "step_key"]
    readonly_fields = ["request_hash", "arguments", "created_at"]


@admin.register(m.RateCounter)
class RateCounterAdmin(ReadOnly):
    list_display = ["key", "window", "count"]
    list_filter = ["window"]
    search_fields = ["key"]

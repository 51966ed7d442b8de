"""Admin for every orchestrator model: searchable, filterable; runs and events read-only."""

from __future__ import annotations

from django import forms
from django.contrib import admin

from mcpgateway.crypto import encrypt
from orchestrator import models as m


class MembershipInline(admin.TabularInline):
    model = m.Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(m.Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]


@admin.register(m.Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "team", "role", "created_at"]
    list_filter = ["role", "team"]
    search_fields = ["user__username", "team__name"]


@admin.register(m.Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "provider", "model", "max_turns", "updated_at"]
    list_filter = ["provider", "team"]
    search_fields = ["name", "description", "model", "system_prompt"]


class ModelCredentialForm(forms.ModelForm):
    """The key is write-only: typed here, stored encrypted, never rendered back."""

    key = forms.CharField(required=False, strip=True, widget=forms.PasswordInput(render_value=False),
                          help_text="For a stored key: type it to set or replace it; it is never shown.")

    class Meta:
        model = m.ModelCredential
        fields = ["name", "provider", "team", "source", "env_var", "base_url", "shared_with"]

    def clean(self) -> dict:
        data = super().clean()
        if data.get("source") == m.ModelCredential.Source.ENV and data.get("team"):
            self.add_error("team", "an environment credential is an instance credential: leave the team empty and "
                                   "choose the teams it is shared with")
        if data.get("source") == m.ModelCredential.Source.STORED and not data.get("key") and not (
                self.instance.pk and self.instance.key_encrypted):
            self.add_error("key", "give the key")
        return data


@admin.register(m.ModelCredential)
class ModelCredentialAdmin(admin.ModelAdmin):
    """Instance operators offer the instance's environment keys to chosen teams here."""

    form = ModelCredentialForm
    list_display = ["name", "provider", "team", "source", "env_var", "base_url", "updated_at"]
    list_filter = ["provider", "source", "team"]
    search_fields = ["name", "env_var", "base_url"]
    filter_horizontal = ["shared_with"]

    def save_model(self, request, obj, form, change) -> None:
        key = form.cleaned_data.get("key")
        if key:
            obj.key_encrypted = encrypt(key)
        super().save_model(request, obj, form, change)


class VersionInline(admin.TabularInline):
    model = m.PipelineVersion
    extra = 0
    fields = ["number", "note", "created_by", "created_at"]
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(m.Pipeline)
class PipelineAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "team", "created_at"]
    list_filter = ["team"]
    search_fields = ["name", "slug", "description"]
    inlines = [VersionInline]


@admin.register(m.PipelineVersion)
class PipelineVersionAdmin(admin.ModelAdmin):
    list_display = ["pipeline", "number", "note", "created_by", "created_at"]
    list_filter = ["pipeline__team"]
    search_fields = ["pipeline__name", "note"]

    def get_readonly_fields(self, request, obj=None):
        # Versions are immutable: new ones come from the builder or the API.
        return ["pipeline", "number", "spec", "note", "created_by", "created_at"] if obj else []


class StepInline(admin.TabularInline):
    model = m.StepRun
    extra = 0
    fields = ["key", "kind", "agent_name", "status", "attempt", "input_tokens", "output_tokens", "started_at", "finished_at"]
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(m.Run)
class RunAdmin(ReadOnlyAdmin):
    list_display = ["id", "pipeline_version", "team", "status", "input_tokens", "output_tokens", "cost_usd", "created_at"]
    list_filter = ["status", "team", "created_at"]
    search_fields = ["id", "pipeline_version__pipeline__name", "error"]
    inlines = [StepInline]
    list_select_related = ["pipeline_version__pipeline", "team"]


@admin.register(m.StepRun)
class StepRunAdmin(ReadOnlyAdmin):
    list_display = ["run", "key", "kind", "agent_name", "status", "attempt", "started_at"]
    list_filter = ["status", "kind"]
    search_fields = ["key", "agent_name", "error"]


@admin.register(m.LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ["run", "step_key", "attempt", "index", "kind", "name", "created_at"]
    list_filter = ["kind"]
    search_fields = ["step_key", "name"]


@admin.register(m.RunEvent)
class RunEventAdmin(ReadOnlyAdmin):
    list_display = ["run", "seq", "type", "step_key", "created_at"]
    list_filter = ["type"]
    search_fields = ["type", "step_key", "hash"]


@admin.register(m.UsageRecord)
class UsageRecordAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "team", "agent", "provider", "model", "input_tokens", "output_tokens", "cost_usd"]
    list_filter = ["provider", "model", "team"]
    search_fields = ["model", "step_key"]


@admin.register(m.ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = ["provider", "model", "input_per_mtok", "output_per_mtok"]
    list_filter = ["provider"]
    search_fields = ["model"]


@admin.register(m.ReviewItem)
class ReviewItemAdmin(admin.ModelAdmin):
    list_display = ["id", "run", "step_key", "reason", "status", "decided_by", "created_at"]
    list_filter = ["reason", "status", "team"]
    search_fields = ["step_key"]
    readonly_fields = ["team", "run", "step_key", "reason", "context", "decision", "decided_by", "decided_at", "created_at"]


@admin.register(m.Limit)
class LimitAdmin(admin.ModelAdmin):
    list_display = ["__str__", "team", "scope", "kind", "value", "updated_at"]
    list_filter = ["scope", "kind", "team"]
    search_fields = ["agent__name", "pipeline__name", "user__username"]


@admin.register(m.IdempotencyKey)
class IdempotencyKeyAdmin(ReadOnlyAdmin):
    list_display = ["key", "caller", "team", "run", "created_at"]
    list_filter = ["team"]
    search_fields = ["key", "caller"]


@admin.register(m.BudgetCounter)
class BudgetCounterAdmin(ReadOnlyAdmin):
    list_display = ["limit", "window", "used"]
    list_filter = ["limit__kind"]
    search_fields = ["limit__team__name"]


@admin.register(m.BudgetReservation)
class BudgetReservationAdmin(ReadOnlyAdmin):
    list_display = ["run", "lease_owner", "limit", "window", "amount", "settled", "created_at"]
    list_filter = ["settled", "limit__kind"]
    search_fields = ["lease_owner", "limit__team__name"]


@admin.register(m.Webhook)
class WebhookAdmin(admin.ModelAdmin):
    list_display = ["pipeline", "url", "enabled", "created_at"]
    list_filter = ["enabled"]
    search_fields = ["url", "pipeline__name"]
    exclude = ["secret_encrypted"]


@admin.register(m.WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["event", "webhook", "status", "attempts", "response_status", "next_attempt_at"]
    list_filter = ["status", "event"]
    search_fields = ["event", "webhook__url"]


class ScheduleForm(forms.ModelForm):
    """Checked as the action checks it (cron, time zone, version, input), so what the admin saves
    is what beat can run."""

    class Meta:
        model = m.Schedule
        fields = ["pipeline", "version", "cron", "timezone", "input", "enabled", "skip_if_running", "created_by"]

    def clean(self) -> dict:
        from orchestrator.actions.errors import ActionError
        from orchestrator.actions.schedules import check_schedule

        data = super().clean()
        if data.get("pipeline") is not None:
            try:
                check_schedule(data["pipeline"], data.get("cron") or "", data.get("input"),
                               data.get("timezone") or "UTC", data.get("version"))
            except ActionError as exc:
                field = exc.field if exc.field in self.fields else None
                self.add_error(field, exc.message)
        return data


@admin.register(m.Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    """Saved and deleted through the schedule actions: a schedule saved here used to get no beat
    task (it never fired), an edited cron left beat on the old time, and a deleted one kept its task."""

    form = ScheduleForm
    list_display = ["pipeline", "cron", "timezone", "enabled", "last_run", "last_error", "created_at"]
    list_filter = ["enabled"]
    search_fields = ["pipeline__name", "cron"]
    readonly_fields = ["periodic_task", "last_run", "last_error"]

    def save_model(self, request, obj, form, change) -> None:
        from orchestrator.actions.schedules import do_save_schedule

        if not change and obj.created_by_id is None:
            obj.created_by = request.user
        saved = do_save_schedule(obj.pipeline, obj.cron, obj.input, obj.created_by, timezone=obj.timezone,
                                 version=obj.version, enabled=obj.enabled, schedule=obj)
        m.Schedule.objects.filter(pk=saved.pk).update(skip_if_running=obj.skip_if_running)

    def delete_model(self, request, obj) -> None:
        from orchestrator.actions.schedules import do_delete_schedule

        do_delete_schedule(obj)

    def delete_queryset(self, request, queryset) -> None:
        from orchestrator.actions.schedules import do_delete_schedule

        for schedule in queryset:
            do_delete_schedule(schedule)


class EvalCaseInline(admin.TabularInline):
    model = m.EvalCase
    extra = 0
    fields = ["position", "name", "input", "expect", "expected_tools", "attack", "tags"]


@admin.register(m.EvalSuite)
class EvalSuiteAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "team", "agent", "pipeline_version", "judge_agent", "concurrency", "updated_at"]
    list_filter = ["team"]
    search_fields = ["name", "slug"]
    inlines = [EvalCaseInline]


@admin.register(m.EvalCase)
class EvalCaseAdmin(admin.ModelAdmin):
    list_display = ["name", "suite", "position"]
    list_filter = ["suite"]
    search_fields = ["name", "suite__name"]


@admin.register(m.EvalRun)
class EvalRunAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "status", "label", "case_done", "case_total", "created_at", "finished_at"]
    list_filter = ["status", "suite"]
    search_fields = ["label", "suite__name"]


@admin.register(m.EvalResult)
class EvalResultAdmin(ReadOnlyAdmin):
    list_display = ["case", "eval_run", "status", "run"]
    list_filter = ["status"]
    search_fields = ["case__name"]


@admin.register(m.SigningKey)
class SigningKeyAdmin(ReadOnlyAdmin):
    list_display = ["kid", "active", "created_at"]
    list_filter = ["active"]
    search_fields = ["kid"]
    exclude = ["private_key_encrypted"]

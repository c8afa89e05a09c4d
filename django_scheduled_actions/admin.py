"""A basic admin for jobs, crons and idempotency keys (read-only jobs, with a cancel action)."""

from django.contrib import admin, messages
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from . import cron, cron_scheduler
from .exceptions import FunctionNotFound
from .forms import CronJobForm
from .models import Batch, CronJob, IdempotencyKey, Saga, SagaStep, ScheduledFunction, State


@admin.register(ScheduledFunction)
class ScheduledFunctionAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "kind", "state", "scheduled_time", "attempts", "queue", "priority")
    list_filter = ("state", "kind", "queue", "name")
    search_fields = ("=id", "name", "idempotency_keys__key")
    ordering = ("-scheduled_time", "-id")
    list_select_related = ("parent", "cron")
    date_hierarchy = "scheduled_time"
    actions = ["cancel_jobs"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Cancel selected jobs", permissions=["cancel"])
    def cancel_jobs(self, request, queryset):
        open_jobs = queryset.filter(state__in=(State.PENDING, State.IN_PROGRESS))
        canceled = open_jobs.cancel(timezone.now())
        skipped = queryset.count() - canceled
        self.message_user(request, f"Canceled {canceled} job(s); skipped {skipped} already finished.",
                          messages.SUCCESS)

    def has_cancel_permission(self, request):
        return request.user.has_perm(f"{self.opts.app_label}.cancel_scheduledfunction")


@admin.register(CronJob)
class CronJobAdmin(admin.ModelAdmin):
    """Admin-defined crons are validated like code-defined ones; code-defined ones only toggle ``enabled``."""

    form = CronJobForm
    list_display = ("name", "function", "schedule_in_words", "enabled", "source", "last_run_at",
                    "next_run_at", "skipped_count")
    list_filter = ("enabled", "source")
    search_fields = ("name", "function")
    actions = ["enable_crons", "disable_crons", "run_crons_now"]
    status_fields = ("schedule_in_words", "next_runs", "source", "last_run_at", "next_run_at",
                     "skipped_count")
    code_fields = ("name", "function", "args", "expression", "interval_seconds", "timezone")

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.source == CronJob.Source.CODE:
            return (*self.code_fields, *self.status_fields)
        return self.status_fields

    def has_delete_permission(self, request, obj=None):
        from_code = obj is not None and obj.source == CronJob.Source.CODE  # it comes back at the next sync
        return super().has_delete_permission(request, obj) and not from_code

    def save_model(self, request, obj, form, change):
        schedule_changed = {"expression", "interval_seconds", "timezone", "enabled"} & set(form.changed_data)
        if obj.enabled and (not change or schedule_changed or obj.next_run_at is None):
            obj.next_run_at = obj.get_schedule().next_after(timezone.now())
        super().save_model(request, obj, form, change)

    @admin.display(description="schedule")
    def schedule_in_words(self, obj):
        try:
            return obj.get_schedule().describe()
        except ValueError as exc:
            return f"invalid: {exc}"

    @admin.display(description="next runs")
    def next_runs(self, obj):
        try:
            runs = cron.next_runs(obj.get_schedule(), timezone.now(), 5)
        except ValueError:
            return "-"
        return ", ".join(timezone.localtime(run).strftime("%Y-%m-%d %H:%M:%S %Z") for run in runs)

    @admin.action(description="Enable selected crons (from their next tick)", permissions=["change"])
    def enable_crons(self, request, queryset):
        now = timezone.now()
        for row in queryset.filter(enabled=False):
            row.enabled, row.next_run_at = True, row.get_schedule().next_after(now)
            row.save(update_fields=["enabled", "next_run_at", "updated_at"])
        self.message_user(request, "Enabled the selected crons.", messages.SUCCESS)

    @admin.action(description="Disable selected crons", permissions=["change"])
    def disable_crons(self, request, queryset):
        queryset.update(enabled=False, updated_at=timezone.now())
        self.message_user(request, "Disabled the selected crons.", messages.SUCCESS)

    @admin.action(description="Run selected crons now (outside their schedule)", permissions=["change"])
    def run_crons_now(self, request, queryset):
        for row in queryset:
            try:
                job_id = cron_scheduler.run_now(row)
            except (FunctionNotFound, ValueError) as exc:
                self.message_user(request, f"{row.name}: {exc}", messages.ERROR)
            else:
                self.message_user(request, f"{row.name}: scheduled job #{job_id}.", messages.SUCCESS)


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(admin.ModelAdmin):
    list_display = ("key", "name", "job", "created_at", "expires_at")
    search_fields = ("key", "name")
    raw_id_fields = ("job",)
    list_select_related = ("job",)


# --- orchestration: batches and sagas (read-only; the workers write them) ---


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Batch)
class BatchAdmin(ReadOnlyAdmin):
    list_display = ("id", "name", "progress", "succeeded", "failed", "canceled", "on_complete", "created_at",
                    "finished_at")
    list_filter = (("finished_at", admin.EmptyFieldListFilter), "name")
    search_fields = ("=id", "name", "on_complete")
    ordering = ("-created_at", "-id")
    readonly_fields = ("name", "progress", "items", "succeeded", "failed", "canceled", "on_complete",
                       "on_complete_args", "on_complete_job", "created_at", "finished_at")
    fields = readonly_fields
    actions = ["cancel_items"]

    @admin.display(description="progress")
    def progress(self, obj):
        percent = 100 * obj.done // obj.total if obj.total else 100
        return format_html('<progress max="{}" value="{}"></progress> {}/{} ({}%)', max(obj.total, 1),
                           obj.done if obj.total else 1, obj.done, obj.total, percent)

    @admin.display(description="items")
    def items(self, obj):
        url = reverse("admin:django_scheduled_actions_scheduledfunction_changelist")
        return format_html('<a href="{}?batch__id__exact={}">{} jobs of {}</a>', url, obj.pk, obj.total, obj.name)

    @admin.action(description="Cancel the open items of selected batches", permissions=["cancel"])
    def cancel_items(self, request, queryset):
        canceled = ScheduledFunction.objects.filter(batch__in=queryset).cancel(timezone.now())
        self.message_user(request, f"Canceled {canceled} job(s).", messages.SUCCESS)

    def has_cancel_permission(self, request):
        return request.user.has_perm(f"{self.opts.app_label}.cancel_scheduledfunction")


class SagaStepInline(admin.TabularInline):
    model = SagaStep
    fields = ("position", "name", "function", "state", "result", "compensation", "compensation_args", "error",
              "created_at", "compensated_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Saga)
class SagaAdmin(ReadOnlyAdmin):
    list_display = ("key", "state", "created_at", "finished_at")
    list_filter = ("state",)
    search_fields = ("key",)
    ordering = ("-created_at", "-id")
    readonly_fields = ("key", "state", "error", "created_at", "finished_at")
    inlines = [SagaStepInline]

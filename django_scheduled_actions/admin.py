"""A basic admin for jobs, crons and idempotency keys (read-only jobs, with a cancel action)."""

from django.contrib import admin, messages
from django.utils import timezone

from .models import CronJob, IdempotencyKey, ScheduledFunction, State


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
    list_display = ("name", "function", "schedule", "timezone", "enabled", "source", "last_run_at", "next_run_at")
    list_filter = ("enabled", "source")
    search_fields = ("name", "function")


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(admin.ModelAdmin):
    list_display = ("key", "name", "job", "created_at", "expires_at")
    search_fields = ("key", "name")
    raw_id_fields = ("job",)
    list_select_related = ("job",)

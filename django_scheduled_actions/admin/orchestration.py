"""Batches and sagas in the admin (read-only; the workers write them)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from ..models import Batch, Saga, SagaStep, ScheduledFunction
from ..scheduling import changes


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Batch)
class BatchAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "name",
        "progress",
        "succeeded",
        "failed",
        "canceled",
        "on_complete",
        "created_at",
        "finished_at",
    )
    list_filter = (("finished_at", admin.EmptyFieldListFilter), "name")
    search_fields = ("=id", "name", "on_complete")
    ordering = ("-created_at", "-id")
    readonly_fields = (
        "name",
        "progress",
        "items",
        "succeeded",
        "failed",
        "canceled",
        "on_complete",
        "on_complete_args",
        "on_complete_job",
        "created_at",
        "finished_at",
    )
    fields = readonly_fields
    actions = ["cancel_items"]

    @admin.display(description="progress")
    def progress(self, obj):
        percent = 100 * obj.done // obj.total if obj.total else 100
        return format_html(
            '<progress max="{}" value="{}"></progress> {}/{} ({}%)',
            max(obj.total, 1),
            obj.done if obj.total else 1,
            obj.done,
            obj.total,
            percent,
        )

    @admin.display(description="items")
    def items(self, obj):
        url = reverse("admin:django_scheduled_actions_scheduledfunction_changelist")
        return format_html('<a href="{}?batch__id__exact={}">{} jobs of {}</a>', url, obj.pk, obj.total, obj.name)

    @admin.action(description="Cancel the open items of selected batches", permissions=["cancel"])
    def cancel_items(self, request, queryset):
        canceled = changes.cancel(ScheduledFunction.objects.filter(batch__in=queryset), timezone.now())
        self.message_user(request, f"Canceled {canceled} job(s).", messages.SUCCESS)

    def has_cancel_permission(self, request):
        return request.user.has_perm(f"{self.opts.app_label}.cancel_scheduledfunction")


class SagaStepInline(admin.TabularInline):
    model = SagaStep
    fields = (
        "position",
        "name",
        "function",
        "state",
        "result",
        "compensation",
        "compensation_args",
        "error",
        "created_at",
        "compensated_at",
    )
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
    readonly_fields = ("key", "state", "job_link", "error", "created_at", "finished_at")
    inlines = [SagaStepInline]

    @admin.display(description="job")
    def job_link(self, obj):
        if not obj.job_id:
            return "-"
        url = reverse("admin:django_scheduled_actions_scheduledfunction_change", args=[obj.job_id])
        return format_html('<a href="{}">#{}</a>', url, obj.job_id)

"""Crons in the admin: schedule in words, next runs, the last run and its state, enable / disable / run now.

Admin-defined crons are validated like code-defined ones (``forms.CronJobForm``); code-defined ones only
toggle ``enabled``.
"""

from __future__ import annotations

import zoneinfo
from typing import cast

from django.contrib import admin, messages
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from ..cron import schedules, ticker
from ..exceptions import FunctionNotFound
from ..models import CronJob, CronJobQuerySet
from . import display
from .forms import CronJobForm
from .jobs import job_url


@admin.register(CronJob)
class CronJobAdmin(admin.ModelAdmin):
    """Admin-defined crons are validated like code-defined ones; code-defined ones only toggle ``enabled``."""

    form = CronJobForm
    list_display = (
        "name",
        "function",
        "schedule_in_words",
        "enabled",
        "source",
        "last_run",
        "next_run",
        "skipped_count",
    )
    list_editable = ("enabled",)
    list_filter = ("enabled", "source")
    search_fields = ("name", "function")
    ordering = ("name",)
    actions = ["enable_crons", "disable_crons", "run_crons_now"]
    status_fields = (
        "schedule_in_words",
        "next_runs",
        "source",
        "last_run_at",
        "last_run",
        "next_run_at",
        "skipped_count",
    )
    code_fields = ("name", "function", "args", "expression", "interval_seconds", "timezone")

    def get_queryset(self, request):
        """Each cron with its latest job's id and state (one subquery each, not a query per row)."""
        return cast(CronJobQuerySet, super().get_queryset(request)).with_last_job()

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
            obj.next_run_at = schedules.for_row(obj).next_after(timezone.now())
        super().save_model(request, obj, form, change)

    @admin.display(description="schedule")
    def schedule_in_words(self, obj):
        try:
            return schedules.for_row(obj).describe()
        except ValueError as exc:
            return f"invalid: {exc}"

    @admin.display(description="next runs")  # in the cron's own time zone
    def next_runs(self, obj):
        try:
            runs = schedules.next_runs(schedules.for_row(obj), timezone.now(), 5)
        except ValueError:
            return "-"
        zone = zoneinfo.ZoneInfo(obj.timezone or "UTC")  # valid: get_schedule() parsed it
        return format_html_join(
            mark_safe("<br>"), "{}", ((run.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z (%a)"),) for run in runs)
        )

    @admin.display(description="next run", ordering="next_run_at")
    def next_run(self, obj):
        return display.when(obj.next_run_at) if obj.enabled else "-"

    @admin.display(description="last run", ordering="last_run_at")
    def last_run(self, obj):
        """The last tick that fired and the state of the cron's latest job (a tick or a "run now")."""
        job_id = getattr(obj, "last_job_id", None)
        if job_id is None:
            return display.when(obj.last_run_at)
        return format_html(
            '{} <a href="{}">#{}</a> {}',
            display.when(obj.last_run_at),
            job_url(job_id),
            job_id,
            display.state_badge(obj.last_job_state),
        )

    @admin.action(description="Enable selected crons (from their next tick)", permissions=["change"])
    def enable_crons(self, request, queryset):
        now = timezone.now()
        for row in queryset.filter(enabled=False):
            row.enabled, row.next_run_at = True, schedules.for_row(row).next_after(now)
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
                job_id = ticker.run_now(row)
            except (FunctionNotFound, ValueError) as exc:
                self.message_user(request, f"{row.name}: {exc}", messages.ERROR)
            else:
                self.message_user(request, f"{row.name}: scheduled job #{job_id}.", messages.SUCCESS)

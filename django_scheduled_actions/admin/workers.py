"""Workers in the admin: one row per ``runworker`` process, alive / late / lost / stopped, with its running jobs."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, OuterRef, Q
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from ..models import ScheduledFunction, WorkerProcess
from ..models.workers import is_late
from . import display


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("alive", "alive"), ("late", "late: missed two heartbeats"), ("lost", "lost"), ("stopped", "stopped")]

    def queryset(self, request, queryset):
        now = timezone.now()
        live = queryset.alive(now).filter(stopped_at__isnull=True)
        chosen = {
            "alive": lambda: live.exclude(pk__in=queryset.late(now)),
            "late": lambda: queryset.late(now),
            "lost": lambda: queryset.lost(now),
            "stopped": lambda: queryset.filter(stopped_at__isnull=False),
        }.get(self.value() or "")
        return chosen() if chosen else queryset


@admin.register(WorkerProcess)
class WorkerProcessAdmin(admin.ModelAdmin):
    """Written by the workers (register, heartbeat, sign off); deleting a row only forgets it."""

    list_display = (
        "worker_id",
        "hostname",
        "pid",
        "status",
        "started",
        "heartbeat",
        "jobs_running",
        "queues_display",
        "concurrency",
    )
    list_filter = (StatusFilter, "hostname")
    search_fields = ("worker_id", "hostname", "=pid")
    ordering = ("-started_at", "-id")
    fields = (
        "worker_id",
        "hostname",
        "pid",
        "status",
        "queues_display",
        "concurrency",
        "started",
        "heartbeat",
        "expires_at",
        "stopped_at",
        "jobs_running",
    )
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        """Each worker with the number of in-progress jobs it holds: one subquery, not a query per row."""
        running = ScheduledFunction.objects.running_count(OuterRef("worker_id"))
        return super().get_queryset(request).annotate(running=running)

    @admin.display(description="status")
    def status(self, obj):
        status = obj.status(timezone.now())
        return display.badge(status, "late (missed two heartbeats)" if status == "late" else None)

    @admin.display(description="started", ordering="started_at")
    def started(self, obj):
        return display.when(obj.started_at)

    @admin.display(description="last heartbeat", ordering="heartbeat_at")
    def heartbeat(self, obj):
        return display.when(obj.heartbeat_at)

    @admin.display(description="jobs running", ordering="running")
    def jobs_running(self, obj):
        if not obj.running:
            return 0
        url = reverse("admin:django_scheduled_actions_scheduledfunction_changelist")
        return format_html(
            '<a href="{}?state__exact=in_progress&amp;worker_id={}">{}</a>', url, obj.worker_id, obj.running
        )

    @admin.display(description="queues")
    def queues_display(self, obj):
        return ", ".join(obj.queues) if obj.queues else "all"


def worker_counts(now) -> dict[str, int]:
    """How many workers are alive, late, lost and stopped (for the dashboard): one aggregate query, and one
    for the live workers' heartbeats (late is decided per worker, see ``WorkerProcess.status``)."""
    counts = WorkerProcess.objects.aggregate(
        live=Count("pk", filter=Q(stopped_at__isnull=True, expires_at__gte=now)),
        lost=Count("pk", filter=Q(stopped_at__isnull=True, expires_at__lt=now)),
        stopped=Count("pk", filter=Q(stopped_at__isnull=False)),
    )
    live = WorkerProcess.objects.alive(now).filter(stopped_at__isnull=True).values_list("heartbeat_at", "expires_at")
    late = sum(is_late(beat, expires, now) for beat, expires in live)
    return {"alive": counts.pop("live") - late, "late": late, **counts}

"""Jobs in the admin: a read-only changelist and detail page, actions cancel / retry / run now (each one the
queryset method the worker and the scheduler use), and the dashboard's URL."""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from ..models import IdempotencyKey, ScheduledFunction, State
from ..scheduling import changes
from ..store.knowledge import Knowledge
from . import display
from .dashboard import dashboard_view
from .rates import RATE_LIMITED, mark_rate_limited

SHOWN_IDS = 20  # ids listed in an action's message
UNRUNNABLE = "no live worker knows this function"


def mark_unrunnable(jobs: Iterable[ScheduledFunction]) -> None:
    """Set ``unrunnable`` on each pending job whose function no live worker knows (see deploys.py): one
    query of the workers table, whatever the number of jobs."""
    now = timezone.now()
    knowledge = Knowledge(now, now)
    for job in jobs:
        job.unrunnable = job.state == State.PENDING and knowledge.unrunnable(job.name, job.kind, job.queue)


def job_url(pk: int) -> str:
    return reverse("admin:django_scheduled_actions_scheduledfunction_change", args=[pk])


def job_link(pk: int | None, label: str | None = None):
    return format_html('<a href="{}">{}</a>', job_url(pk), label or f"#{pk}") if pk else "-"


def id_list(ids: Iterable[object]) -> str:
    ids = list(ids)
    shown = ", ".join(str(i) for i in ids[:SHOWN_IDS])
    return shown + (f" and {len(ids) - SHOWN_IDS} more" if len(ids) > SHOWN_IDS else "")


def selected(queryset: QuerySet) -> QuerySet:
    """The selected jobs by primary key, without the changelist's joins (an UPDATE cannot always take them)."""
    return ScheduledFunction.objects.filter(pk__in=list(queryset.values_list("pk", flat=True)))


class OverdueFilter(admin.SimpleListFilter):
    """Pending jobs whose scheduled time has passed: what the dashboard counts as overdue (scheduler lag)."""

    title = "overdue"
    parameter_name = "overdue"

    def lookups(self, request, model_admin):
        return [("yes", "pending, past its time")]

    def queryset(self, request, queryset):
        return queryset.due(timezone.now()) if self.value() == "yes" else queryset


@admin.register(ScheduledFunction)
class ScheduledFunctionAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "name",
        "kind",
        "state_badge",
        "scheduled",
        "attempts_display",
        "duration_display",
        "queue",
        "origin",
    )
    list_display_links = ("id", "name")
    list_filter = ("state", OverdueFilter, "kind", "name", "queue")
    search_fields = ("=id", "name", "idempotency_keys__key")
    ordering = ("-scheduled_time", "-id")
    list_select_related = ("cron",)
    date_hierarchy = "scheduled_time"
    list_per_page = 100
    actions = ["cancel_jobs", "retry_jobs", "run_jobs_now"]
    fieldsets = (
        (None, {"fields": ("id", "name", "kind", "state_badge", "queue", "priority")}),
        (
            "Timing",
            {
                "fields": (
                    "scheduled",
                    "created_at",
                    "started_at",
                    "completed_time",
                    "duration_display",
                    "attempts_display",
                    "worker_id",
                    "lease_expires_at",
                )
            },
        ),
        ("Arguments and outcome", {"fields": ("args_pretty", "result_pretty", "error_pretty")}),
        (
            "Related",
            {
                "fields": (
                    "parent_link",
                    "children_links",
                    "cron_link",
                    "batch_link",
                    "retry_of_link",
                    "retries_links",
                    "idempotency_keys_display",
                )
            },
        ),
    )
    readonly_fields = [field for _name, options in fieldsets for field in cast("tuple[str, ...]", options["fields"])]

    # --- jobs are written by the scheduler and the worker, never by hand ---

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        """The ``change`` permission allows "run now"; a job's page is always read-only."""
        return obj is None and super().has_change_permission(request)

    def has_cancel_permission(self, request):
        return request.user.has_perm(f"{self.opts.app_label}.cancel_scheduledfunction")

    def has_retry_permission(self, request):
        return request.user.has_perm(f"{self.opts.app_label}.retry_scheduledfunction")

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        mark_unrunnable(changelist.result_list)
        mark_rate_limited(changelist.result_list)
        return changelist

    def get_object(self, request, object_id, from_field=None):
        job = super().get_object(request, object_id, from_field)
        if job is not None:
            mark_unrunnable([job])
            mark_rate_limited([job])
        return job

    def get_urls(self):
        view = self.admin_site.admin_view(lambda request: dashboard_view(self, request))
        return [path("dashboard/", view, name=f"{self.opts.app_label}_dashboard"), *super().get_urls()]

    # --- columns and fields ---

    @admin.display(description="state", ordering="state")
    def state_badge(self, obj):
        """The state, and on a pending job that no live worker can run, or that waits for its function's
        rate limit, a badge saying so."""
        if getattr(obj, "unrunnable", False):
            return format_html("{} {}", display.state_badge(obj.state), display.badge("unrunnable", UNRUNNABLE))
        if getattr(obj, "rate_limited", False):
            return format_html("{} {}", display.state_badge(obj.state), display.badge("rate-limited", RATE_LIMITED))
        return display.state_badge(obj.state)

    @admin.display(description="scheduled", ordering="scheduled_time")
    def scheduled(self, obj):
        """The time, marked ``overdue`` on a pending job past it."""
        now = timezone.now()
        if obj.state == State.PENDING and obj.scheduled_time <= now:
            return format_html("{} {}", display.when(obj.scheduled_time, now), display.badge("overdue"))
        return display.when(obj.scheduled_time, now)

    @admin.display(description="attempts", ordering="attempts")
    def attempts_display(self, obj):
        return f"{obj.attempts}/{obj.max_attempts}"

    @admin.display(description="duration")
    def duration_display(self, obj):
        return display.short_duration(obj.duration) or "-"

    @admin.display(description="origin")
    def origin(self, obj):
        if obj.cron_id:
            return format_html("cron: {}", obj.cron.name)
        if obj.retry_of_id:
            return format_html("retry of {}", job_link(obj.retry_of_id))
        if obj.parent_id:
            return format_html("scheduled by {}", job_link(obj.parent_id))
        return "-"

    @admin.display(description="arguments")
    def args_pretty(self, obj):
        return display.pretty_json(obj.args)

    @admin.display(description="result")
    def result_pretty(self, obj):
        return display.pretty_json(obj.result) if obj.result is not None else "-"

    @admin.display(description="error")
    def error_pretty(self, obj):
        return display.preformatted(obj.error)

    @admin.display(description="scheduled by")
    def parent_link(self, obj):
        return job_link(obj.parent_id)

    @admin.display(description="jobs it scheduled")
    def children_links(self, obj):
        return self._related_jobs(obj.children.all(), "parent", obj.pk)

    @admin.display(description="fired by cron")
    def cron_link(self, obj):
        if not obj.cron_id:
            return "-"
        url = reverse("admin:django_scheduled_actions_cronjob_change", args=[obj.cron_id])
        tick = f" (tick {timezone.localtime(obj.cron_tick):%Y-%m-%d %H:%M:%S})" if obj.cron_tick else " (run now)"
        return format_html('<a href="{}">{}</a>{}', url, obj.cron.name, tick)

    @admin.display(description="batch")
    def batch_link(self, obj):
        if not obj.batch_id:
            return "-"
        url = reverse("admin:django_scheduled_actions_batch_change", args=[obj.batch_id])
        return format_html('<a href="{}">{}</a>', url, obj.batch)

    @admin.display(description="retry of")
    def retry_of_link(self, obj):
        return job_link(obj.retry_of_id)

    @admin.display(description="retried as")
    def retries_links(self, obj):
        return self._related_jobs(obj.retries.all(), "retry_of", obj.pk)

    @admin.display(description="idempotency keys")
    def idempotency_keys_display(self, obj):
        keys = list(obj.idempotency_keys.values_list("key", flat=True)[:10])
        return ", ".join(keys) or "-"

    def _related_jobs(self, jobs: QuerySet, field: str, owner_id: int):
        rows = list(jobs.order_by("id").values_list("pk", "name", "state")[: SHOWN_IDS + 1])
        if not rows:
            return "-"
        items = format_html_join(
            mark_safe("<br>"),
            '<a href="{}">#{} {}</a> {}',
            ((job_url(pk), pk, name, display.state_badge(state)) for pk, name, state in rows[:SHOWN_IDS]),
        )
        if len(rows) > SHOWN_IDS:
            changelist = reverse("admin:django_scheduled_actions_scheduledfunction_changelist")
            items = format_html(
                '{}<br><a href="{}?{}__id__exact={}">all of them</a>', items, changelist, field, owner_id
            )
        return items

    # --- actions: each one calls the queryset method the worker and the scheduler use ---

    @admin.action(description="Cancel selected jobs (pending and running)", permissions=["cancel"])
    def cancel_jobs(self, request, queryset):
        done = changes.cancel_each(selected(queryset), timezone.now())
        canceled = [c.job_id for c in done if c.outcome == "canceled"]
        if canceled:
            self.message_user(request, f"Canceled {len(canceled)} job(s): #{id_list(canceled)}.", messages.SUCCESS)
        raced = [c for c in done if c.outcome == "raced"]
        if raced:
            self.message_user(request, f"{len(raced)} job(s) finished before they could be canceled.", messages.WARNING)
        finished = [c for c in done if c.outcome == "finished"]
        if finished:
            self.message_user(
                request,
                f"Skipped {len(finished)} job(s) already finished: {self._with_states(finished)}.",
                messages.WARNING,
            )

    @admin.action(description="Retry selected jobs (failed and canceled)", permissions=["retry"])
    def retry_jobs(self, request, queryset):
        outcomes = changes.retry(selected(queryset), timezone.now())
        retried = [o for o in outcomes if o.new_job_id]
        if retried:
            self.message_user(
                request,
                f"Retried {len(retried)} job(s): {id_list(f'#{o.job_id} as #{o.new_job_id}' for o in retried)}.",
                messages.SUCCESS,
            )
        skipped = [o for o in outcomes if not o.new_job_id]
        if skipped:
            self.message_user(
                request,
                f"Skipped {len(skipped)} job(s): {id_list(f'#{o.job_id} ({o.skipped})' for o in skipped)}.",
                messages.WARNING,
            )

    @admin.action(description="Run selected jobs now (pending)", permissions=["change"])
    def run_jobs_now(self, request, queryset):
        done = changes.run_now_each(selected(queryset), timezone.now())
        moved = [c.job_id for c in done if c.outcome == "moved"]
        if moved:
            self.message_user(request, f"{len(moved)} pending job(s) are due now: #{id_list(moved)}.", messages.SUCCESS)
        due = [c.job_id for c in done if c.outcome == "due"]
        if due:
            self.message_user(request, f"Skipped {len(due)} job(s) already due: #{id_list(due)}.", messages.INFO)
        other = [c for c in done if c.outcome == "not_pending"]
        if other:
            self.message_user(
                request, f"Skipped {len(other)} job(s) not pending: {self._with_states(other)}.", messages.WARNING
            )

    @staticmethod
    def _with_states(done: list[changes.Change]) -> str:
        return id_list(f"#{c.job_id} ({State(c.state).label})" for c in done)


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(admin.ModelAdmin):
    """Keys are written by the scheduler; deleting one releases it early."""

    list_display = ("key", "name", "job_link", "created_at", "expires_at", "status")
    list_filter = ("name",)
    search_fields = ("key", "name", "=job__id")
    ordering = ("-created_at", "-id")
    list_select_related = ("job",)
    fields = ("key", "name", "job_link", "completed", "result", "created_at", "expires_at", "status")
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="job", ordering="job")
    def job_link(self, obj):
        if not obj.job_id:
            return "-"
        return format_html("{} {}", job_link(obj.job_id), display.state_badge(obj.job.state))

    @admin.display(description="status")
    def status(self, obj):
        return display.badge("held" if obj.expires_at > timezone.now() else "expired")

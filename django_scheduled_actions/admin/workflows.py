"""Workflow runs in the admin: a read-only changelist (filter by state and workflow, search by id and key),
each run's steps as a timeline, and the actions cancel and retry from the failed step, which call what the
public API calls (``workflows.cancel``, ``workflows.retry``)."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import admin, messages
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from .. import workflows
from ..models import ScheduledFunction, WorkflowRun, WorkflowStep
from . import display
from .jobs import id_list, job_link

RESULT_CHARS = 200  # of a step's result or error shown in the timeline


def state_badge(state: str):
    return display.badge(state)


@admin.register(WorkflowRun)
class WorkflowRunAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "state_badge", "created", "finished", "duration_display", "idempotency_key")
    list_display_links = ("id", "name")
    list_filter = ("state", "name")
    search_fields = ("=id", "idempotency_key")
    ordering = ("-created_at", "-id")
    list_per_page = 100
    actions = ["cancel_runs", "retry_runs"]
    fields = (
        "id",
        "name",
        "state_badge",
        "queue",
        "idempotency_key",
        "created",
        "finished",
        "duration_display",
        "args_pretty",
        "result_pretty",
        "error_pretty",
        "inbox_pretty",
        "timeline",
    )
    readonly_fields = fields

    # --- runs are written by the workflows layer, never by hand ---

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_cancel_permission(self, request):
        """Who may cancel jobs may cancel runs (``cancel_scheduledfunction``)."""
        return request.user.has_perm(f"{self.opts.app_label}.cancel_scheduledfunction")

    def has_retry_permission(self, request):
        """Who may retry jobs may retry runs (``retry_scheduledfunction``)."""
        return request.user.has_perm(f"{self.opts.app_label}.retry_scheduledfunction")

    # --- columns and fields ---

    @admin.display(description="state", ordering="state")
    def state_badge(self, obj):
        return state_badge(obj.state)

    @admin.display(description="started", ordering="created_at")
    def created(self, obj):
        return display.when(obj.created_at)

    @admin.display(description="finished", ordering="finished_at")
    def finished(self, obj):
        return display.when(obj.finished_at)

    @admin.display(description="duration")
    def duration_display(self, obj):
        return display.short_duration(obj.finished_at - obj.created_at) if obj.finished_at else "-"

    @admin.display(description="arguments")
    def args_pretty(self, obj):
        return display.pretty_json(obj.args)

    @admin.display(description="result")
    def result_pretty(self, obj):
        return display.pretty_json(obj.result) if obj.result is not None else "-"

    @admin.display(description="error")
    def error_pretty(self, obj):
        return display.preformatted(obj.error)

    @admin.display(description="events not taken yet")
    def inbox_pretty(self, obj):
        return display.pretty_json(obj.inbox) if obj.inbox else "-"

    @admin.display(description="steps")
    def timeline(self, obj):
        return timeline(list(WorkflowStep.objects.filter(run_id=obj.pk).order_by("index")))

    # --- actions: each one calls the function of the public API ---

    @admin.action(description="Cancel selected workflow runs", permissions=["cancel"])
    def cancel_runs(self, request, queryset):
        self._each(request, queryset, workflows.cancel, "Canceled", "already finished")

    @admin.action(description="Retry selected workflow runs from their failed step", permissions=["retry"])
    def retry_runs(self, request, queryset):
        self._each(request, queryset, workflows.retry, "Retried from the failed step", "not failed")

    def _each(self, request, queryset, act: Callable[[int], bool], done: str, skipped: str) -> None:
        ids = sorted(queryset.values_list("pk", flat=True))
        acted = [pk for pk in ids if act(pk)]
        if acted:
            self.message_user(request, f"{done} {len(acted)} run(s): #{id_list(acted)}.", messages.SUCCESS)
        others = [pk for pk in ids if pk not in acted]
        if others:
            self.message_user(request, f"Skipped {len(others)} run(s) {skipped}: #{id_list(others)}.", messages.WARNING)


TIMELINE_ROW = (
    '<tr class="sa-step sa-step-{}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>'
    "<td>{}</td><td>{}</td><td>{}</td></tr>"
)
TIMELINE = (
    '<table class="sa-timeline"><thead><tr><th>#</th><th>kind</th><th>function / event</th><th>state</th>'
    "<th>attempts</th><th>started</th><th>duration</th><th>result or error</th><th>job</th></tr></thead>"
    "<tbody>{}</tbody></table>"
)


def timeline(steps: list[WorkflowStep]):
    """The run's steps in order: state, attempts (of the step's job), when, how long, result or error."""
    if not steps:
        return "-"
    job_ids = [s.job_id for s in steps if s.job_id and s.kind in (WorkflowStep.Kind.MUTATION, WorkflowStep.Kind.ACTION)]
    attempts = dict(ScheduledFunction.objects.filter(pk__in=job_ids).values_list("pk", "attempts"))
    now = timezone.now()
    rows = format_html_join(
        "",
        TIMELINE_ROW,
        (
            (
                step.state,
                step.index if step.group is None else f"{step.index} (parallel at {step.group})",
                step.kind,
                step.function or "-",
                state_badge(step.state),
                attempts.get(step.job_id, "-") if step.job_id else "-",
                display.when(step.created_at, now),
                display.short_duration((step.finished_at or now) - step.created_at),
                outcome(step),
                job_link(step.job_id),
            )
            for step in steps
        ),
    )
    return format_html(TIMELINE, rows)


def outcome(step: WorkflowStep):
    if step.state == WorkflowStep.State.FAILED:
        last = (step.error.strip().splitlines() or [""])[-1][:RESULT_CHARS]
        return format_html('<code class="sa-error" title="{}">{}</code>', step.error, last)
    if step.state == WorkflowStep.State.WAITING and step.wake_at:
        return format_html("until {}", display.when(step.wake_at))
    if step.is_finished and step.state != WorkflowStep.State.CANCELED:
        text = display.json_text(step.result)
        return format_html("<code>{}</code>", text if len(text) <= RESULT_CHARS else text[:RESULT_CHARS] + "…")
    return "-"

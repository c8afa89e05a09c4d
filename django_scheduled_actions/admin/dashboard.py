"""The admin dashboard: jobs per state and per function, throughput charts (inline SVG drawn server-side),
scheduler lag, recent failures, workers and workflow runs per state. Every figure is an aggregate query: no
query per row."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import django
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Min
from django.db.models.functions import TruncHour, TruncMinute
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from ..models import ScheduledFunction, State, WorkflowRun
from ..store.knowledge import Knowledge
from . import display
from .workers import worker_counts

TEMPLATE = "admin/django_scheduled_actions/dashboard.html"
TOP_FUNCTIONS = 50
RECENT_FAILURES = 20
CHART_WIDTH, CHART_HEIGHT, CHART_TOP = 720, 140, 14  # CHART_TOP: room above the highest bar for its label


def dashboard_view(model_admin, request):
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "title": "Scheduled actions dashboard",
        "breadcrumbs_as_list": django.VERSION >= (6,),
        **dashboard_data(timezone.now()),
    }
    return TemplateResponse(request, TEMPLATE, context)


def dashboard_data(now: datetime) -> dict[str, Any]:
    jobs = ScheduledFunction.objects.order_by()
    changelist = reverse("admin:django_scheduled_actions_scheduledfunction_changelist")
    return {
        "now": now,
        "changelist": changelist,
        "states": state_counts(jobs, changelist),
        "functions": function_counts(jobs),
        "lag": scheduler_lag(jobs, now),
        "hour": chart(throughput(jobs, now, timedelta(minutes=1), 60), "%H:%M", "per minute"),
        "day": chart(throughput(jobs, now, timedelta(hours=1), 24), "%H:00", "per hour"),
        "failures": recent_failures(jobs, now),
        "workers": worker_counts(now),
        "unrunnable": unrunnable(jobs, now),
        "runs": run_counts(),
    }


def unrunnable(jobs, now: datetime) -> list[dict[str, Any]]:
    """Pending jobs per function and queue that no live worker knows (a rolling deploy under way, or
    code that is gone: see deploys.py), most first."""
    knowledge = Knowledge(now, now)
    rows = jobs.filter(state=State.PENDING).values_list("name", "kind", "queue").annotate(n=Count("pk"))
    found = [
        {"name": name, "kind": kind, "queue": queue, "count": n}
        for name, kind, queue, n in rows
        if knowledge.unrunnable(name, kind, queue)
    ]
    return sorted(found, key=lambda row: (-row["count"], row["name"], row["queue"]))


def state_counts(jobs, changelist: str) -> list[dict[str, Any]]:
    counts = dict(jobs.values_list("state").annotate(n=Count("pk")))
    return [
        {
            "state": state,
            "badge": display.state_badge(state),
            "count": counts.get(state, 0),
            "url": f"{changelist}?state__exact={state}",
        }
        for state in State.values
    ]


def run_counts() -> list[dict[str, Any]]:
    """Workflow runs per state (one aggregate query), each linked to the runs' changelist in that state."""
    counts = dict(WorkflowRun.objects.order_by().values_list("state").annotate(n=Count("pk")))
    changelist = reverse("admin:django_scheduled_actions_workflowrun_changelist")
    return [
        {
            "state": state,
            "badge": display.badge(state, str(WorkflowRun.State(state).label)),
            "count": counts.get(state, 0),
            "url": f"{changelist}?state__exact={state}",
        }
        for state in WorkflowRun.State.values
    ]


def function_counts(jobs) -> list[dict[str, Any]]:
    table: dict[str, dict[str, int]] = {}
    for name, state, n in jobs.values_list("name", "state").annotate(n=Count("pk")):
        table.setdefault(name, dict.fromkeys(State.values, 0))[state] = n
    rows: list[dict[str, Any]] = [
        {"name": name, "counts": [by_state[s] for s in State.values], "total": sum(by_state.values())}
        for name, by_state in table.items()
    ]
    rows.sort(key=lambda row: (-row["total"], row["name"]))
    return rows[:TOP_FUNCTIONS]


def scheduler_lag(jobs, now: datetime) -> dict[str, Any]:
    """How late the oldest overdue pending job is (0 when workers keep up) and how many are overdue."""
    row = jobs.due(now).aggregate(oldest=Min("scheduled_time"), overdue=Count("pk"))
    lag = now - row["oldest"] if row["oldest"] else timedelta(0)
    oldest_id = None
    if row["oldest"]:
        oldest_id = jobs.due(now).filter(scheduled_time=row["oldest"]).values_list("pk", flat=True).first()
    return {
        "seconds": lag.total_seconds(),
        "text": display.short_duration(lag),
        "overdue": row["overdue"],
        "oldest_id": oldest_id,
    }


def throughput(jobs, now: datetime, step: timedelta, buckets: int) -> list[tuple[datetime, int, int]]:
    """Finished jobs per ``step`` over the last ``buckets`` steps: ``(start, succeeded, failed)`` each."""
    trunc = TruncMinute if step == timedelta(minutes=1) else TruncHour
    end = trunc_time(now, step) + step
    start = end - step * buckets
    rows = (
        jobs.filter(completed_time__gte=start, completed_time__lt=end, state__in=(State.SUCCESS, State.FAILED))
        .annotate(bucket=trunc("completed_time"))
        .values_list("bucket", "state")
        .annotate(n=Count("pk"))
    )
    series: list[list[Any]] = [[start + step * i, 0, 0] for i in range(buckets)]
    for bucket, state, n in rows:
        if bucket is None:  # MySQL without time zone tables cannot convert to a named zone
            continue
        index = int((bucket - start) / step)
        if 0 <= index < buckets:
            series[index][1 if state == State.SUCCESS else 2] += n
    return [(at, ok, failed) for at, ok, failed in series]


def trunc_time(moment: datetime, step: timedelta) -> datetime:
    local = timezone.localtime(moment).replace(second=0, microsecond=0)
    return local.replace(minute=0) if step >= timedelta(hours=1) else local


@dataclass
class Bar:
    x: str
    width: str
    ok_y: str
    ok_height: str
    failed_y: str
    failed_height: str
    title: str


def chart(series: list[tuple[datetime, int, int]], label_format: str, unit: str) -> dict[str, Any]:
    """Stacked bars (succeeded below, failed on top) as SVG coordinates, for the template to draw."""
    peak = max((ok + failed for _at, ok, failed in series), default=0)
    scale = (CHART_HEIGHT - CHART_TOP) / peak if peak else 0
    slot = CHART_WIDTH / len(series)
    bars = []
    for i, (at, ok, failed) in enumerate(series):
        ok_height, failed_height = ok * scale, failed * scale
        label = timezone.localtime(at).strftime(label_format)
        bars.append(
            Bar(
                x=f"{i * slot + 1:.1f}",
                width=f"{max(slot - 2, 1):.1f}",
                ok_y=f"{CHART_HEIGHT - ok_height:.1f}",
                ok_height=f"{ok_height:.1f}",
                failed_y=f"{CHART_HEIGHT - ok_height - failed_height:.1f}",
                failed_height=f"{failed_height:.1f}",
                title=f"{label}: {ok} succeeded, {failed} failed",
            )
        )
    ticks = [
        {"x": f"{i * slot:.1f}", "label": timezone.localtime(series[i][0]).strftime(label_format)}
        for i in range(0, len(series), max(len(series) // 6, 1))
    ]
    return {
        "bars": bars,
        "ticks": ticks,
        "peak": peak,
        "unit": unit,
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "total_ok": sum(ok for _at, ok, _f in series),
        "total_failed": sum(f for _at, _ok, f in series),
    }


def recent_failures(jobs, now: datetime) -> list[dict[str, Any]]:
    rows = (
        jobs.filter(state=State.FAILED, completed_time__gte=now - timedelta(hours=1))
        .order_by("-completed_time", "-id")
        .values("pk", "name", "completed_time", "error")[:RECENT_FAILURES]
    )
    return [
        {
            **row,
            "when": display.relative(row["completed_time"], now),
            "error_line": (row["error"].strip().splitlines() or [""])[-1][:200],
        }
        for row in rows
    ]

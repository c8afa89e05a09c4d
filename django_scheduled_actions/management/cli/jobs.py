"""``jobs`` (the newest jobs, filtered as in the admin's changelist) and ``show ID`` (every field of one job
and what it is linked to)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from ...models import ScheduledFunction, WorkflowRun, WorkflowStep
from ...workflows import journal
from .output import Report, moment, pretty, short, table

LISTED = (
    "id",
    "name",
    "kind",
    "state",
    "queue",
    "priority",
    "scheduled_time",
    "created_at",
    "attempts",
    "max_attempts",
)
HEADERS = ("ID", "FUNCTION", "KIND", "STATE", "QUEUE", "RUN AT", "ATTEMPTS", "AGE")
SHOWN_RELATED = 20  # ids of children listed by ``show``


def list_jobs(
    using: str,
    states: list[str],
    functions: list[str],
    queues: list[str],
    since: datetime | None,
    limit: int,
) -> Report:
    """The newest jobs first (by id), at most ``limit`` (0: all), of the given states, functions and queues,
    created at ``since`` or later."""
    now = timezone.now()
    jobs = ScheduledFunction.objects.using(using).in_queues(queues)
    if states:
        jobs = jobs.filter(state__in=states)
    if functions:
        jobs = jobs.filter(name__in=functions)
    if since is not None:
        jobs = jobs.filter(created_at__gte=since)
    rows = jobs.order_by("-id").values(*LISTED)
    found = list(rows[: limit + 1] if limit else rows)
    more = bool(limit) and len(found) > limit
    found = found[:limit] if limit else found
    for row in found:
        row["age_seconds"] = (now - row["created_at"]).total_seconds()
    lines = table(HEADERS, [_cells(row, now) for row in found]) if found else ["No jobs match."]
    if more:
        lines.append(f"The newest {limit} shown; more match (--limit N to see more, --limit 0 for all).")
    return Report({"jobs": found, "limit": limit, "more": more}, lines)


def _cells(row: dict[str, Any], now: datetime) -> list[Any]:
    return [
        row["id"],
        row["name"],
        row["kind"],
        row["state"],
        row["queue"],
        moment(row["scheduled_time"]),
        f"{row['attempts']}/{row['max_attempts']}",
        short(now - row["created_at"]),
    ]


def show_job(using: str, job_id: int) -> Report:
    """Every field of job ``job_id``, its retries, children, idempotency keys, cron and workflow run."""
    job = ScheduledFunction.objects.using(using).select_related("cron").filter(pk=job_id).first()
    if job is None:
        return Report({"job": None, "id": job_id}, [f"#{job_id} not found"], f"job #{job_id} not found")
    document = {field.attname: getattr(job, field.attname) for field in ScheduledFunction._meta.concrete_fields}
    document["duration_seconds"] = job.duration.total_seconds() if job.duration else None
    document["cron_name"] = job.cron.name if job.cron else None
    document["retries"] = list(job.retries.order_by("pk").values_list("pk", flat=True))
    document["children_count"] = job.children.count()
    document["children"] = list(job.children.order_by("pk").values_list("pk", flat=True)[:SHOWN_RELATED])
    document["idempotency_keys"] = list(job.idempotency_keys.order_by("pk").values("key", "expires_at"))
    document["workflow_run"] = _workflow_run(job, using)
    return Report({"job": document}, _show_lines(document, timezone.now()))


def _workflow_run(job: ScheduledFunction, using: str) -> dict[str, Any] | None:
    """The workflow run the job is a step of (or wakes, or replays), if any."""
    step = WorkflowStep.objects.using(using).filter(job_id=job.pk).values("run_id", "index").first()
    run_id = step["run_id"] if step else None
    if run_id is None and job.name == journal.RESUME and isinstance(job.args, dict):
        run_id = job.args.get("run_id")
    run = WorkflowRun.objects.using(using).filter(pk=run_id).values("id", "name", "state").first() if run_id else None
    if run is None:
        return None
    return {**run, "step_index": step["index"] if step else None}


def _show_lines(job: dict[str, Any], now: datetime) -> list[str]:
    lines = [f"Job #{job['id']}  {job['name']}  ({job['kind']}, {job['state']})"]
    for label, value in (
        ("queue", job["queue"]),
        ("priority", job["priority"]),
        ("attempts", f"{job['attempts']}/{job['max_attempts']}"),
        ("scheduled", moment(job["scheduled_time"], now)),
        ("created", moment(job["created_at"], now)),
        ("started", moment(job["started_at"], now)),
        ("completed", moment(job["completed_time"], now)),
        ("duration", f"{job['duration_seconds']:.3f}s" if job["duration_seconds"] is not None else None),
        ("worker", job["worker_id"] or None),
        ("lease expires", moment(job["lease_expires_at"], now)),
        ("scheduled by", f"#{job['parent_id']}" if job["parent_id"] else None),
        ("cron", f"{job['cron_name']} (tick {moment(job['cron_tick'])})" if job["cron_name"] else None),
        ("batch", f"#{job['batch_id']}" if job["batch_id"] else None),
        ("retry of", f"#{job['retry_of_id']}" if job["retry_of_id"] else None),
        ("retried as", ", ".join(f"#{pk}" for pk in job["retries"]) or None),
        ("jobs it scheduled", _children(job)),
        ("idempotency keys", ", ".join(key["key"] for key in job["idempotency_keys"]) or None),
        ("workflow run", _run_line(job["workflow_run"])),
    ):
        lines.append(f"{label + ':':<19}{'-' if value is None else value}")
    lines += ["arguments:", *_indented(pretty(job["args"]))]
    lines += ["result:", *_indented(pretty(job["result"]) if job["result"] is not None else "-")]
    lines += ["error:", *_indented(job["error"] or "-")]
    return lines


def _children(job: dict[str, Any]) -> str | None:
    if not job["children_count"]:
        return None
    shown = ", ".join(f"#{pk}" for pk in job["children"])
    more = job["children_count"] - len(job["children"])
    return shown + (f" and {more} more" if more else "")


def _run_line(run: dict[str, Any] | None) -> str | None:
    if run is None:
        return None
    step = f", step {run['step_index']}" if run["step_index"] is not None else ""
    return f"#{run['id']} {run['name']} ({run['state']}{step})"


def _indented(text: str) -> list[str]:
    return ["  " + line for line in text.splitlines()]

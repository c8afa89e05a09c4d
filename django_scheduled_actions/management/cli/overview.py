"""``crons`` (the cron definitions, their last and next tick), ``workers`` (every worker row, its status and
heartbeat age) and ``prune`` (the worker's pruning, run by hand)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import OuterRef

from ...conf import app_settings
from ...cron import schedules
from ...models import CronJob, ScheduledFunction, WorkerProcess
from ...store import dbclock
from ...worker import maintenance
from .output import Report, moment, short, table

CRON_HEADERS = ("NAME", "FUNCTION", "SCHEDULE", "ENABLED", "LAST TICK", "LAST JOB", "NEXT TICK", "SKIPPED")
WORKER_HEADERS = ("WORKER", "HOST", "PID", "STATUS", "HEARTBEAT", "STARTED", "RUNNING", "QUEUES", "THREADS")
CRON_FIELDS = ("id", "name", "function", "args", "expression", "interval_seconds", "timezone", "enabled", "source")


def crons(using: str) -> Report:
    """Each cron with its schedule in words, its last fired tick and latest job, and its next tick."""
    now = dbclock.now(using)
    rows = []
    for cron in CronJob.objects.using(using).with_last_job().order_by("name"):
        row = {name: getattr(cron, name) for name in CRON_FIELDS}
        row |= {
            "schedule": _describe(cron),
            "last_run_at": cron.last_run_at,
            "last_job_id": getattr(cron, "last_job_id", None),  # annotated by with_last_job()
            "last_job_state": getattr(cron, "last_job_state", None),
            "next_run_at": cron.next_run_at if cron.enabled else None,
            "skipped_count": cron.skipped_count,
        }
        rows.append(row)
    cells = [
        [
            row["name"],
            row["function"],
            row["schedule"],
            "yes" if row["enabled"] else "no",
            moment(row["last_run_at"], now),
            f"#{row['last_job_id']} {row['last_job_state']}" if row["last_job_id"] else None,
            moment(row["next_run_at"], now),
            row["skipped_count"],
        ]
        for row in rows
    ]
    return Report({"crons": rows}, table(CRON_HEADERS, cells) if rows else ["No crons."])


def _describe(cron: CronJob) -> str:
    try:
        return schedules.for_row(cron).describe()
    except ValueError as exc:
        return f"invalid: {exc}"


def workers(using: str) -> Report:
    """Every worker row, newest first: alive, late (missed two heartbeats), lost or stopped, judged on the
    database's clock as leases are, with the number of jobs each holds."""
    now = dbclock.now(using)
    running = ScheduledFunction.objects.running_count(OuterRef("worker_id"))
    rows = []
    for worker in WorkerProcess.objects.using(using).annotate(running=running).order_by("-started_at", "-id"):
        rows.append(
            {
                **{name: getattr(worker, name) for name in ("worker_id", "hostname", "pid", "queues", "concurrency")},
                "status": worker.status(now),
                "started_at": worker.started_at,
                "heartbeat_at": worker.heartbeat_at,
                "heartbeat_age_seconds": (now - worker.heartbeat_at).total_seconds(),
                "expires_at": worker.expires_at,
                "stopped_at": worker.stopped_at,
                "running": getattr(worker, "running", 0),  # annotated above
            }
        )
    cells = [
        [
            row["worker_id"],
            row["hostname"],
            row["pid"],
            row["status"],
            f"{short(now - row['heartbeat_at'])} ago",
            moment(row["started_at"]),
            row["running"],
            ", ".join(row["queues"]) or "all",
            row["concurrency"],
        ]
        for row in rows
    ]
    return Report({"now": now, "workers": rows}, table(WORKER_HEADERS, cells) if rows else ["No workers."])


def prune(using: str, older_than: timedelta | None, dry_run: bool) -> Report:
    """What the worker prunes every ten minutes, now: finished rows older than ``older_than`` (default
    ``SCHEDULED_ACTIONS_RETENTION``) and expired idempotency keys; with ``dry_run``, only counted."""
    retention = older_than or app_settings.RETENTION
    now = dbclock.now(using)
    rows = maintenance.prune_rows(now, retention, using, dry_run=dry_run)
    document: dict[str, Any] = {
        "dry_run": dry_run,
        "retention_seconds": retention.total_seconds(),
        "now": now,
        "cutoff": now - retention,
        "rows": rows,
    }
    counts = ", ".join(f"{count} {kind.replace('_', ' ')}" for kind, count in rows.items())
    verb = "Would delete (dry run)" if dry_run else "Deleted"
    return Report(document, [f"{verb}, finished before {moment(now - retention)}: {counts}."])

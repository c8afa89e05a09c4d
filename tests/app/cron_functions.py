"""Functions the cron tests run. Registered names are "tests.app.cron_functions:<name>"."""

from __future__ import annotations

from django_scheduled_actions import internal_action, internal_mutation, internal_query

from .models import Effect


@internal_mutation
def mark(ctx, label: str) -> int:
    """Records one Effect per committed run, keyed by the label and the job's cron tick."""
    job = ctx.job
    Effect.objects.create(key=label, job_id=job.id if job else None, attempt=job.attempt if job else 0)
    return Effect.objects.filter(key=label).count()


@internal_action
def ping(ctx, times: int = 1) -> int:
    return times


@internal_query
def look(ctx) -> int:
    return Effect.objects.count()
